r"""The training-free spotting baseline on the synthetic long videos (synthetic_lv).

Command:
  python launch.py --config configs/spotting_baseline.py --workdir runs/spotting_baseline

Each position's score is the mean flow magnitude of the face's grid cells after removing
the head's own motion (the grid's median flow), the eyes' row of cells left out
(`mer_jax.preprocess.long_video.motion_score`); it is smoothed, thresholded per video at
mean + p x (max - mean) and every run above the threshold is one interval
(`mer_jax.evaluate.spotting.spot`). Nothing is trained or fitted: the score of every
video is spotted with the settings below, and all videos are scored (docs/evaluation.md,
"Spotting"). The learned spotter, configs/spotting.py, is compared with it on the same
build; the measured figures are in RESULTS.md.
"""

import ml_collections

from configs import common


def get_config() -> ml_collections.ConfigDict:
    config = common.get_base_config()
    config.task = "spot_baseline"
    config.seeds = (0,)  # nothing random: one evaluation
    config.data.name = "synthetic_lv"
    config.data.protocol = None
    # No model is trained: the schema's model section is not read.
    config.model = ml_collections.ConfigDict({"name": "none"})
    config.spotting = common.spotting_settings()
    # Chosen for this score on the development build of docs/evaluation.md ("Spotting":
    # generator seed 1, 6 subjects; smoothing 5 or 9 positions x p 0.05-0.3), never on
    # the evaluated build: 9 positions (360 ms at the 40 ms sampling) and p 0.2.
    config.spotting.smooth_width = 9
    config.spotting.relative_threshold = 0.2
    return config
