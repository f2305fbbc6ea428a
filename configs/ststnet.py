r"""STSTNet (Liong et al. 2019) under LOSO on the synthetic database: the baseline.

Command:
  python launch.py --config configs/ststnet.py --workdir runs/ststnet

Expected result on the default synthetic database (generator 2, 16 subjects, CASME II
5-class, LOSO, seeds 0/1/2): UF1 about 0.4 (chance 0.2), below the AU-oracle ceiling and
the linear probe on its own input (RESULTS.md gives both beside its row, with the
measured figures).
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.get_base_config()
    config.model.name = "ststnet"
    config.train.steps = 500
    config.train.batch_size = 64
    config.train.learning_rate = 1e-3
    return config
