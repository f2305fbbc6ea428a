r"""FR, Feature Refinement (Zhou et al. 2022), under LOSO on the synthetic database.

Command:
  python launch.py --config configs/fr.py --workdir runs/fr

Expected result on the default synthetic database (16 subjects, CASME II 5-class,
LOSO, seeds 0/1/2), measured: UF1 0.400 +- 0.014, UAR 0.419 +- 0.014, accuracy
0.406 +- 0.016 (chance 0.2), 41 min on a 2-core CPU shared with other jobs. Training
accuracy reaches about 0.9, so FR overfits the 16-subject synthetic data; lr 1e-3 gave
UF1 0.326 +- 0.004.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.get_base_config()
    config.model.name = "fr"
    config.train.steps = 500
    config.train.batch_size = 32
    config.train.learning_rate = 3e-3
    return config
