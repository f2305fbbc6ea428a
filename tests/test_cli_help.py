"""Every command-line entry point answers --help with its usage and exit status 0."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each entry point as a user starts it, and a flag its help must name.
_MODULES = {  # `python -m MODULE --help` and a flag it must name
    "data_builders.cli": "--manual_dir",
    "data_builders.export": "--format",
    "benchmarks.results_table": "--rows",
    "benchmarks.claims": "--trials",
    "benchmarks.device_suite": "--",
    "benchmarks.loso_folds": "--modes",
    "benchmarks.linear_probe": "--config",
    "benchmarks.official_ststnet": "--weights",
    "benchmarks.flow": "--sizes",
    "benchmarks.spotting_preprocess": "--minutes",
    "benchmarks.spotting_table": "--rows",
    "benchmarks.au_oracle": "--config",
    "benchmarks.alignment_jitter": "--video",
    "mer_jax.evaluate.compare": "--",
    "mer_jax.synthetic.demo": "--",
    "mer_jax.doctor": "--",
}
COMMANDS = {"launch.py": (["launch.py"], "--config")} | {
    name: (["-m", name], flag) for name, flag in _MODULES.items()
}


def test_every_entry_point_with_a_main_is_listed():
    """A new `if __name__ == "__main__":` module gets a row above."""
    mains = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for folder in ("mer_jax", "data_builders", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if '\nif __name__ == "__main__":' in path.read_text()
    }
    assert mains == {name for name in COMMANDS if name != "launch.py"}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_exits_0_and_shows_the_usage(name):
    args, flag = COMMANDS[name]
    result = subprocess.run(
        [sys.executable, *args, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (name, result.stderr[-3000:])
    assert flag in result.stdout, (name, result.stdout[-3000:])
    assert "Traceback" not in result.stderr
