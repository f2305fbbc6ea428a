"""Training runs: LOSO (`engine`, the fold-parallel engine) and MA2MI pre-training
(`pretraining`), two specialisations of one skeleton (`run`); `init_from` carries
pre-trained branches from one to the other; `checkpoint` and `optim` serve both.

`RUNS` maps a config's `task` to its run class, which launch.py instantiates with the
config, the workdir and the loaded data.
"""

from mer_jax.train.engine import LosoRun
from mer_jax.train.pretraining import PretrainingRun
from mer_jax.train.run import TrainingRun

RUNS: dict[str, type[TrainingRun]] = {"loso": LosoRun, "pretrain": PretrainingRun}

__all__ = ["RUNS", "LosoRun", "PretrainingRun", "TrainingRun"]
