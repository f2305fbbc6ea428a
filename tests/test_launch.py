"""launch.py answers a user's mistake with a clear message, not a traceback.

Mistakes found by the project's own checks (`UserError`) exit with code 2 and a line
starting "error:"; mistakes in the flags themselves may be answered by absl's flag
parser, which exits with code 1 and says "Flags parsing error". Either way stderr holds
no traceback, and the message names what was wrong.
"""

import subprocess
from pathlib import Path

import fixtures
import pytest
from fixtures import launch, tiny_config, write_config_file

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


@pytest.fixture(scope="module")
def ststnet_workdir(synthetic_data_dir, tmp_path_factory) -> Path:
    """A workdir holding finished checkpoints of that config's STSTNet."""
    workdir = tmp_path_factory.mktemp("ststnet")
    config = tiny_config(
        synthetic_data_dir, {"engine.mode": "sequential", "seeds": (0,), "train.steps": 20}
    )
    fixtures.make_run(config, workdir).train()
    assert list((workdir / "checkpoints").glob("chunk_*"))
    return workdir


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2, one "error:" message naming every fragment, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr[-5000:]
    assert result.returncode == 2, (result.returncode, result.stderr[-5000:])
    assert "error: " in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-5000:])


def assert_flag_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Like assert_user_error, but absl's flag parser may answer instead (exit code 1)."""
    assert "Traceback" not in result.stderr, result.stderr[-5000:]
    assert result.returncode in (1, 2), (result.returncode, result.stderr[-5000:])
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-5000:])


def test_unknown_config_key(config_file, tmp_path):
    result = launch(
        f"--config={config_file}", f"--workdir={tmp_path}", "--config.train.no_such_key=1"
    )
    assert_flag_error(result, "no_such_key")


@pytest.mark.parametrize(
    ("flag", "fragment"),
    [("--config.train.steps=abc", "config.train.steps"), ("--mode=tune", "mode")],
)
def test_malformed_flag_value(config_file, tmp_path, flag, fragment):
    result = launch(f"--config={config_file}", f"--workdir={tmp_path}", flag)
    assert_flag_error(result, fragment)


def test_missing_config_file(tmp_path):
    missing = tmp_path / "no_such_config.py"
    result = launch(f"--config={missing}", f"--workdir={tmp_path}")
    assert_flag_error(result, str(missing))


def test_unknown_model_name(config_file, tmp_path):
    result = launch(
        f"--config={config_file}", f"--workdir={tmp_path}", "--config.model.name=no_such_model"
    )
    # The message lists the models there are.
    assert_user_error(result, "no_such_model", "ststnet", "fr")


def test_unknown_dataset(config_file, tmp_path):
    result = launch(
        f"--config={config_file}", f"--workdir={tmp_path}", "--config.data.name=no_such_dataset"
    )
    assert_user_error(result, "no_such_dataset", "synthetic_me")


@pytest.mark.parametrize(
    ("flag", "fragment"),
    [
        ("--config.train.steps=30", "train.steps=30"),
        ("--config.train.checkpoint_every=30", "train.checkpoint_every=30"),
        ("--config.engine.steps_per_dispatch=0", "steps_per_dispatch=0"),
    ],
)
def test_schedule_not_a_multiple_of_steps_per_dispatch(config_file, tmp_path, flag, fragment):
    result = launch(f"--config={config_file}", f"--workdir={tmp_path}", flag)
    assert_user_error(result, fragment, "steps_per_dispatch")


def test_empty_data_dir(config_file, tmp_path):
    """An empty data.data_dir must not silently build the dataset in the current folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # --mode=eval on an empty workdir: even where the mistake goes unnoticed, the run
    # stops right after the (tiny) build instead of training.
    result = launch(
        f"--config={config_file}",
        f"--workdir={tmp_path / 'workdir'}",
        "--config.data.data_dir=",
        "--mode=eval",
        cwd=cwd,
    )
    assert_user_error(result, "data.data_dir")
    assert not list(cwd.iterdir()), "something was written into the current folder"


def test_data_dir_that_is_a_file(config_file, tmp_path):
    not_a_folder = tmp_path / "datasets.txt"
    not_a_folder.write_text("")
    result = launch(
        f"--config={config_file}",
        f"--workdir={tmp_path / 'workdir'}",
        f"--config.data.data_dir={not_a_folder}",
    )
    assert_user_error(result, str(not_a_folder))


def test_workdir_of_another_model(config_file, ststnet_workdir):
    result = launch(
        f"--config={config_file}", f"--workdir={ststnet_workdir}", "--config.model.name=fr"
    )
    assert_user_error(result, "'ststnet'", "'fr'", "--workdir")


def test_workdir_of_other_settings(config_file, ststnet_workdir):
    result = launch(
        f"--config={config_file}",
        f"--workdir={ststnet_workdir}",
        "--config.train.learning_rate=0.01",
    )
    assert_user_error(result, "train.learning_rate", "--workdir")


def test_eval_on_an_empty_workdir(config_file, tmp_path):
    result = launch(f"--config={config_file}", f"--workdir={tmp_path}", "--mode=eval")
    assert_user_error(result, "No checkpoints", "--mode=train")
