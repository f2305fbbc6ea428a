r"""FR, Feature Refinement (Zhou et al. 2022), under LOSO on the synthetic database.

Command:
  python launch.py --config configs/fr.py --workdir runs/fr

Expected result (measured, see README): filled in after calibration.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.get_base_config()
    config.model.name = "fr"
    config.train.steps = 1000
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    return config
