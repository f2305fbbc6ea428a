"""launch.py as a user runs it, in a subprocess: its help, its exit status and its one-line
errors (the catalogue of bad inputs is tests/test_reliability.py, run in-process), and
builder options given on its command line.
"""

import json
import subprocess
from pathlib import Path

import fixtures
import pytest
from fixtures import launch, write_config_file

from mer_jax.errors import UserError

# The session's tiny dataset, a fixture of this module too.
synthetic_data_dir = fixtures.synthetic_data_dir


@pytest.fixture(scope="module")
def config_file(synthetic_data_dir, tmp_path_factory) -> Path:
    """A tiny, fast, one-seed sequential config for launch.py."""
    return write_config_file(
        tmp_path_factory.mktemp("config") / "tiny_config.py",
        synthetic_data_dir,
        {"engine.mode": "sequential", "seeds": (0,), "train.steps": 20},
    )


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2, one "error:" line naming every fragment, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr[-5000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-5000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-5000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def test_help_names_the_flags():
    result = launch("--help")
    assert result.returncode == 0, result.stderr[-3000:]
    for flag in ("--config", "--workdir", "--mode"):
        assert flag in result.stdout


def test_a_bad_override_is_one_line_and_exit_2(config_file, tmp_path):
    result = launch(
        f"--config={config_file}", f"--workdir={tmp_path}", "--config.train.no_such_key=1"
    )
    assert_user_error(result, "no_such_key")
    assert not (tmp_path / "config.json").exists()


def test_builder_options_from_the_command_line(config_file, synthetic_data_dir, tmp_path):
    """--config.data.overrides.KEY=VALUE sets a builder field (here a 48-pixel crop): the
    variant is built into its own cache entry and trained on."""
    workdir = tmp_path / "workdir"
    result = launch(
        f"--config={config_file}",
        f"--workdir={workdir}",
        "--config.data.overrides.crop_size=48",
        "--config.data.overrides.flow_size=24",
    )
    assert result.returncode == 0, result.stderr[-5000:]
    overrides = json.loads((workdir / "config.json").read_text())["data"]["overrides"]
    assert overrides["crop_size"] == 48 and overrides["flow_size"] == 24
    assert overrides["num_subjects"] == fixtures.NUM_SUBJECTS  # the file's own kept
    built = [p.name for p in (synthetic_data_dir / "synthetic_me").iterdir()]
    assert any("crop_size_48" in name and "flow_size_24" in name for name in built), built
    # An unknown builder field names the valid ones.
    result = launch(
        f"--config={config_file}", f"--workdir={workdir}", "--config.data.overrides.stepz=1"
    )
    assert_user_error(result, "stepz", "crop_size")


def test_a_grid_of_nested_selection_from_the_command_line():
    """--config.tune.grid.SECTION.FIELD=(V1,V2) adds an axis to the (empty) grid; a key
    without a section is refused before any work."""
    import launch as launcher

    command = launcher.parse(
        [
            "--config=configs/ststnet.py",
            "--config.tune.grid.train.learning_rate=(1e-3,3e-3)",
            "--config.tune.grid.train.weight_decay",
            "0,0.1",
        ]
    )
    assert command.config.tune.grid.to_dict() == {
        "train": {"learning_rate": (1e-3, 3e-3), "weight_decay": (0, 0.1)}
    }
    with pytest.raises(UserError, match="SECTION.FIELD"):
        launcher.parse(["--config=configs/ststnet.py", "--config.tune.grid.dropout=(0,1)"])


@pytest.mark.parametrize(
    "config, fragments",
    [
        # A config's get_config raising: its own message, not ml_collections' traceback.
        ("configs/protocols/megc2019_composite.py:nonexistent", ("unknown method 'nonexistent'",)),
        ("configs/ststnet.py:fr", ("get_config() takes 0 positional arguments",)),
    ],
)
def test_a_config_loading_error_is_one_line_without_a_traceback(config, fragments, tmp_path):
    result = launch(f"--config={config}", f"--workdir={tmp_path}")
    assert_user_error(result, config, *fragments)
    assert 'File "' not in result.stderr
