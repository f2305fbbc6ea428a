r"""STSTNet (Liong et al. 2019) under LOSO on the synthetic database.

Command:
  python launch.py --config configs/ststnet.py --workdir runs/ststnet

Expected result (measured, see README): filled in after calibration.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.get_base_config()
    config.model.name = "ststnet"
    config.train.steps = 1000
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    return config
