"""Training runs: LOSO (`engine`, the fold-parallel engine) and MA2MI pre-training
(`pretraining`), two specialisations of one skeleton (`run`), and spotting in long
videos (`spotting`: a training-free baseline, and a learned spotter on the LOSO engine);
`init_from` carries pre-trained branches from one to the other; `checkpoint` and `optim`
serve both.

`RUNS` maps a config's `task` to its run class, which launch.py instantiates with the
config, the workdir and the loaded data.
"""

from mer_jax.train.engine import LosoRun
from mer_jax.train.pretraining import PretrainingRun
from mer_jax.train.run import TrainingRun
from mer_jax.train.spotting import BaselineRun, SpottingRun

RUNS: dict[str, type[TrainingRun]] = {
    "loso": LosoRun,
    "pretrain": PretrainingRun,
    "spotting": SpottingRun,
    "spot_baseline": BaselineRun,
}

__all__ = ["RUNS", "BaselineRun", "LosoRun", "PretrainingRun", "SpottingRun", "TrainingRun"]
