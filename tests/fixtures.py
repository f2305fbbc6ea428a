"""Shared by the engine and launcher tests: one tiny synthetic_me build and configs on it.

A test module makes the dataset fixture its own with
`synthetic_data_dir = fixtures.synthetic_data_dir` (conftest.py stays the device set-up).
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import ml_collections
import pytest

import data_builders

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch.py"
# configs/ is not an installed package; `python -m pytest` from the root finds it, plain
# `pytest` would not.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import importlib  # noqa: E402

# 4 subjects, 4 clips each on average (17 drawn by the generator, 16 of them labelled): 4 LOSO
# folds.
# DIS flow instead of TV-L1 keeps the build to seconds.
OVERRIDES = {"num_subjects": 4, "clips_per_subject": 4, "crop_size": 64, "flow_method": "dis"}
NUM_SUBJECTS = OVERRIDES["num_subjects"]

# A few dispatches of a small batch: enough to move the weights away from their
# initialisation, so layouts that trained differently would show in the predictions. The
# batch fits the smallest training set of a fold (10 samples; a larger one is refused).
BATCH = 7
TINY = {
    "data.overrides": OVERRIDES,
    "seeds": (0, 1),
    "train.steps": 40,
    "train.batch_size": BATCH,
    "train.checkpoint_every": 20,
    "engine.steps_per_dispatch": 20,
}


@pytest.fixture(scope="session")
def synthetic_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir holding the tiny synthetic_me build.

    Every module importing this fixture gets its own instance, so the build goes to one
    fixed folder of the session: the second `build` finds it complete and only reads it.
    """
    data_dir = tmp_path_factory.getbasetemp() / "synthetic_me_data"
    data_builders.build("synthetic_me", data_dir=data_dir, overrides=OVERRIDES, workers=2)
    return data_dir


def make_run(
    config: ml_collections.ConfigDict, workdir: Path, run_class: type | None = None
) -> Any:
    """What launch.py does: the run of the config's task, given the loaded data."""
    from mer_jax.train import RUNS

    return (run_class or RUNS[config.task])(config, workdir, data_builders.load(config.data))


def settings(data_dir: Path, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Dotted config keys -> values of a tiny run on the fixture data."""
    return {**TINY, "data.data_dir": str(data_dir), **(changes or {})}


def tiny_config(
    data_dir: Path, changes: dict[str, Any] | None = None, base: str = "ststnet"
) -> ml_collections.ConfigDict:
    """configs/<base>.py with the tiny settings and `changes` ({"engine.mode": ...})."""
    config = importlib.import_module(f"configs.{base}").get_config()
    for key, value in settings(data_dir, changes).items():
        *path, name = key.split(".")
        holder = config
        for part in path:
            holder = holder[part]
        holder[name] = value
    return config


def write_config_file(
    path: Path, data_dir: Path, changes: dict[str, Any] | None = None, base: str = "ststnet"
) -> Path:
    """A config file for launch.py equal to `tiny_config(data_dir, changes, base)`.

    A file rather than --config.x=y flags: data.overrides is an empty ConfigDict in the
    base config, so its keys cannot be set from the command line.
    """
    lines = [f"from configs import {base}", "", "", "def get_config():"]
    lines.append(f"    config = {base}.get_config()")
    lines += [f"    config.{key} = {value!r}" for key, value in settings(data_dir, changes).items()]
    lines.append("    return config")
    path.write_text("\n".join(lines) + "\n")
    return path


def launch_env() -> dict[str, str]:
    """The environment of a launch.py subprocess: CPU only, quiet TensorFlow logging."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}


def launch(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Runs `python launch.py *args` to completion, capturing its output as text."""
    return subprocess.run(
        [sys.executable, str(LAUNCH), *args],
        cwd=cwd,
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
