r"""LTR3O at full size, for a GPU or TPU: all folds and seeds stacked on the device.

Command:
  python launch.py --config configs/ltr3o_full.py --workdir runs/ltr3o_full

K = 8 candidates of 28 x 28 maps with strain (6 channels), a 32/64/128-channel encoder,
2000 steps of batch 64, folds x seeds trained at once (`engine.mode=stacked`). Add
`--config.data.name=casme2 --config.data.manual_dir=...` for a licensed database.
RESULTS.md says whether and where it has been measured (the device suite).
"""

import ml_collections

from configs import ltr3o


def get_config() -> ml_collections.ConfigDict:
    config = ltr3o.get_config()
    config.model.num_candidates = 8
    config.model.input_size = 28
    config.model.use_strain = True
    config.model.encoder_features = (32, 64, 128)
    config.model.scorer_features = 32
    config.train.steps = 2000
    config.train.batch_size = 64
    config.train.schedule = "cosine"
    config.train.warmup_steps = 100
    config.train.checkpoint_every = 500
    config.engine.mode = "stacked"
    return config
