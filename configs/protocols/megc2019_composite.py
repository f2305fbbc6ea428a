r"""The MEGC 2019 composite, 3 classes: 442 clips of 68 subjects (CASME II 145, SAMM 133,
SMIC-HS 164), LOSO over the 68 namespaced subjects, UF1 and UAR pooled over all folds and
on each database's part.

Commands (the three licensed releases in one folder, a sub-folder each: docs/datasets.md):
  python launch.py --config configs/protocols/megc2019_composite.py:ststnet \
      --config.data.manual_dir=/data/MEGC2019 --workdir runs/megc2019_ststnet
  ... :fr, :ltr3o, :dere_grl or :miacnet the same way (configs/protocols/base.py).

Published figures to compare `metrics.json` (`uf1`, `uar` and `per_dataset`) with:
- STSTNet (arXiv 1902.03634): UF1 .7353, UAR .7605; the leak-free re-run of MEB reports
  UF1 about .713. The released variant with its released schedule (Adam 5e-5, batch 256,
  800 epochs of 2 updates each, the last one's predictions pooled) is what the config runs.
- FR (arXiv 2101.04838): UF1 .7838, UAR .7832; CASME II part .8915 / .8873, SAMM part
  .7372 / .7155, SMIC part .7011 / .7083.
- LTR3O, DeRe-GRL, MIACNet: no composite figure in what this project has of them (the
  abstracts); compare with the paper's own table if it has one.

The leak-free protocol it runs (docs/evaluation.md): every fold trains on the other 67
subjects only, for a fixed number of steps chosen beforehand; its last-step model
predicts its test subject once; UF1, UAR and accuracy are computed once on the 442
pooled predictions of each seed (5 seeds, mean +- std, subject-bootstrap intervals);
nothing is tuned. The published figures were not all obtained so (per-fold averages or
epochs picked on the test subject inflate them; docs/evaluation.md).
"""

import ml_collections

from configs.protocols import base


def get_config(method: str = "ststnet") -> ml_collections.ConfigDict:
    # A fold's training side is 403-441 clips: 2 updates of batch 256 an epoch.
    return base.protocol_config(
        method, data_name="megc2019", ststnet_batch=256, ststnet_updates_per_epoch=2
    )
