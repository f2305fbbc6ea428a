r"""STSTNet (Liong et al. 2019) under LOSO on the synthetic database: the README's main job.

Command:
  python launch.py --config configs/ststnet.py --workdir runs/ststnet

Expected result on the default synthetic database (16 subjects, CASME II 5-class,
LOSO): measured with seed 0 only, 500 steps, UF1 0.567, UAR 0.535, accuracy 0.555
(about 2 min of training on a 2-core CPU); the 3-seed figures are in the README.
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
