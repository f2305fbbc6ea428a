r"""FR, Feature Refinement (Zhou et al. 2022), under LOSO on the synthetic database.

Command:
  python launch.py --config configs/fr.py --workdir runs/fr

Expected result on the default synthetic database (16 subjects, CASME II 5-class,
LOSO, seeds 0/1/2): above chance (0.2) but below STSTNet; FR overfits the 16 synthetic
subjects (training accuracy near 0.9). The learning rate 3e-3 was picked over 1e-3 on
the outer LOSO of the first build, before nested selection existed (the practice
docs/evaluation.md now rules out); on the generator-2 build nested LOSO splits between
them fold by fold and its row scores as this config does (no paired difference), so the
value stands until FR's trials are retrained at the nested choice. The measured figures,
and the trials that raise FR (a flattened readout, flips and dropout: options, off), are
in RESULTS.md and docs/methods.md.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.get_base_config()
    config.model.name = "fr"
    config.train.steps = 500
    config.train.batch_size = 32
    config.train.learning_rate = 3e-3
    # [ours, chosen by nested LOSO] The classifier reads each class's a_c * F flattened,
    # not its global average (the paper's pooling, our first reading): the readout chosen
    # in every outer fold of the default build (docs/methods.md, "The methods on trial").
    config.model.readout = "flatten"
    return config
