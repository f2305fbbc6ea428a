r"""LTR3O at full size, for a GPU or TPU: all folds and seeds stacked on the device.

Command:
  python launch.py --config configs/ltr3o_full.py --workdir runs/ltr3o_full

The size and schedule of `common.ltr3o_full_size` (shared with the published protocols,
configs/protocols/base.py), folds x seeds trained at once (`engine.mode=stacked`). Add
`--config.data.name=casme2 --config.data.manual_dir=...` for a licensed database.
RESULTS.md says whether and where it has been measured (the device suite).
"""

import ml_collections

from configs import common, ltr3o


def get_config() -> ml_collections.ConfigDict:
    config = ltr3o.get_config()
    common.ltr3o_full_size(config)
    config.train.checkpoint_every = 500
    config.engine.mode = "stacked"
    return config
