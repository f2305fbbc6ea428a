"""Nothing lost, nothing silent: bad inputs and faults, each answered by one clear line.

`CATALOGUE` is a table of bad inputs given to launch.py as a user types them (run in this
process through `launch.main`, which is the command line). Each entry asserts the exit
status, a one-line "error:" message naming the problem, no traceback, and that a finished
workdir and the data cache are byte-for-byte unchanged. Then the faults: a second run on
a locked workdir, a diverging run, damaged checkpoints, a full disk, a killed build, and
a run killed again and again (SIGKILL and SIGINT) that ends byte-identical to one that
never was.
"""

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import fixtures
import pytest
from fixtures import LAUNCH, ROOT, launch_env, write_config_file

import launch
from mer_jax import guards

synthetic_data_dir = fixtures.synthetic_data_dir

# One seed, sequential (one chunk per fold), 40 steps: checkpoints at 20 and 40.
SETTINGS = {"engine.mode": "sequential", "seeds": (0,), "train.steps": 40}
OUTPUTS = ("metrics.json", "predictions.csv", "confusion_matrix.png", "curves.png")


def main(*args: str) -> tuple[int, str, str]:
    """launch.py's command line, in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = launch.main(["launch.py", *args])
    return code, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below `folder` (the lock file, bookkeeping only, excepted)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name not in (".lock", ".build.lock")
    }


def error_line(stderr: str) -> str:
    """The one "error:" line, which names the problem (a release's download instructions
    may follow it)."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def config_file(synthetic_data_dir, tmp_path_factory) -> Path:
    return write_config_file(
        tmp_path_factory.mktemp("config") / "reliable.py", synthetic_data_dir, SETTINGS
    )


@pytest.fixture(scope="module")
def finished(config_file, tmp_path_factory) -> Path:
    """A workdir whose training finished."""
    workdir = tmp_path_factory.mktemp("finished") / "workdir"
    code, _, err = main(f"--config={config_file}", f"--workdir={workdir}")
    assert code == 0, err[-3000:]
    return workdir


# ---------------------------------------------------------------------------------------
# The catalogue.
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """A bad input: launch.py flags ("{config}", "{finished}", "{fresh}", "{tmp}" are
    filled in), the exit status, fragments of the one error line, and an optional set-up
    that prepares files (given the tmp folder and the finished workdir) and returns
    replacements for the placeholders."""

    name: str
    flags: tuple[str, ...]
    fragments: tuple[str, ...]
    exit_code: int = 2
    setup: Callable[[Path, Path, Path], dict[str, str]] | None = None


def _config_with(body: str) -> Callable[[Path, Path, Path], dict[str, str]]:
    """A set-up writing a config file that derives from the tiny one and runs `body`."""

    def setup(tmp: Path, finished: Path, config_file: Path) -> dict[str, str]:
        del finished
        (tmp / "empty").mkdir()
        path = tmp / "custom_config.py"
        path.write_text(
            f"import importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('base', {str(config_file)!r})\n"
            "base = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(base)\n\n\n"
            "def get_config():\n"
            "    config = base.get_config()\n" + textwrap.indent(body, "    ") + "\n"
            "    return config\n"
        )
        return {"config": str(path)}

    return setup


def _copy_finished(change: Callable[[Path], None]) -> Callable[[Path, Path, Path], dict[str, str]]:
    """A set-up copying the finished workdir into {fresh} and changing the copy."""

    def setup(tmp: Path, finished: Path, config_file: Path) -> dict[str, str]:
        del config_file
        copy = tmp / "copy"
        shutil.copytree(finished, copy)
        change(copy)
        return {"fresh": str(copy)}

    return setup


def _file(tmp: Path, finished: Path, config_file: Path) -> dict[str, str]:
    (tmp / "a_file").write_text("not a folder")
    return {"fresh": str(tmp / "a_file")}


C, W, F = "--config={config}", "--workdir={finished}", "--workdir={fresh}"
CATALOGUE = [
    # The command line.
    Case("unknown config field", (C, W, "--config.train.no_such_key=1"), ("no_such_key",)),
    Case("unknown section", (C, W, "--config.trian.steps=1"), ("trian",)),
    Case("not a number", (C, W, "--config.train.steps=abc"), ("train.steps",)),
    Case("unknown mode", (C, W, "--mode=tune"), ("--mode=tune",)),
    Case("missing config file", ("--config={tmp}/nope.py", W), ("nope.py",)),
    Case("no --config", (W,), ("--config is required",)),
    Case("empty --workdir", (C, "--workdir="), ("--workdir is empty",)),
    Case("workdir is a file", (C, F), ("is a file",), setup=_file),
    Case(
        "config file with a syntax error",
        (C, W),
        ("syntax error", "line"),
        setup=lambda tmp, finished, config_file: (
            (tmp / "broken.py").write_text("def get_config(:\n    pass\n"),
            {"config": str(tmp / "broken.py")},
        )[1],
    ),
    Case("malformed override flag", (C, W, "--config.data.overrides.=3"), ("overrides",)),
    # The schema, field by field.
    Case("steps 0", (C, W, "--config.train.steps=0"), ("train.steps=0", "positive integer")),
    Case("steps not whole dispatches", (C, W, "--config.train.steps=30"), ("train.steps=30",)),
    Case("batch 0", (C, W, "--config.train.batch_size=0"), ("train.batch_size=0",)),
    Case("negative batch", (C, W, "--config.train.batch_size=-3"), ("train.batch_size=-3",)),
    Case("checkpoint_every 0", (C, W, "--config.train.checkpoint_every=0"), ("checkpoint_every",)),
    Case("checkpoint_every odd", (C, W, "--config.train.checkpoint_every=30"), ("divide",)),
    Case(
        "steps_per_dispatch 0",
        (C, W, "--config.engine.steps_per_dispatch=0"),
        ("engine.steps_per_dispatch=0",),
    ),
    Case("nan learning rate", (C, W, "--config.train.learning_rate=nan"), ("learning_rate=nan",)),
    Case("negative lr", (C, W, "--config.train.learning_rate=-0.1"), ("learning_rate=-0.1",)),
    Case("negative decay", (C, W, "--config.train.weight_decay=-1.0"), ("weight_decay",)),
    Case("unknown optimizer", (C, W, "--config.train.optimizer=lion"), ("optimizer='lion'",)),
    Case("unknown schedule", (C, W, "--config.train.schedule=step"), ("schedule='step'",)),
    Case("warm-up too long", (C, W, "--config.train.warmup_steps=40"), ("warmup_steps=40",)),
    Case("negative clip", (C, W, "--config.train.grad_clip=-1.0"), ("grad_clip",)),
    Case("duplicate seeds", (C, W, "--config.seeds=(0,0)"), ("seeds=(0, 0)", "no seed twice")),
    Case("fractional seed", (C, W, "--config.seeds=(0.5,)"), ("seeds=(0.5,)",)),
    Case("no seed", (C, W, "--config.seeds=()"), ("seeds=()",)),
    Case("unknown dtype", (C, W, "--config.engine.compute_dtype=fp8"), ("compute_dtype='fp8'",)),
    Case("unknown engine mode", (C, W, "--config.engine.mode=fast"), ("engine.mode='fast'",)),
    Case("unknown loop", (C, W, "--config.engine.loop=while"), ("engine.loop='while'",)),
    Case("zero devices", (C, W, "--config.engine.devices=0"), ("engine.devices=0",)),
    Case("negative chunk", (C, W, "--config.engine.replicas_per_chunk=-1"), ("replicas_per",)),
    Case("unknown guard", (C, W, "--config.engine.transfer_guard=off"), ("transfer_guard",)),
    Case("unknown task", (C, W, "--config.task=tune"), ("task='tune'",)),
    Case("unknown split", (C, W, "--config.data.split=lopo"), ("data.split='lopo'",)),
    Case("unknown protocol", (C, W, "--config.data.protocol=nope"), ("data.protocol='nope'",)),
    Case("unknown model", (C, W, "--config.model.name=resnet"), ("resnet", "ststnet")),
    Case("model of the other task", (C, W, "--config.model.name=ma2mi"), ("'pretrain' model",)),
    Case(
        "unknown model setting",
        (C, W),
        ("model.no_such_width",),
        setup=_config_with("config.model.no_such_width = 3"),
    ),
    Case(
        "unknown field in a config file",
        (C, W),
        ("data.no_such_field",),
        setup=_config_with("config.data.no_such_field = 1"),
    ),
    # The data settings (checked before any build).
    Case("unknown dataset", (C, W, "--config.data.name=nope"), ("nope", "synthetic_me")),
    Case("dataset of another kind", (C, W, "--config.data.name=synthetic_macro"), ("'pairs'",)),
    Case("unknown builder config", (C, W, "--config.data.builder_config=nope"), ("'nope'",)),
    Case("unknown builder field", (C, W, "--config.data.overrides.stepz=1"), ("stepz",)),
    Case("builder field type", (C, W, "--config.data.overrides.crop_size=big"), ("crop_size",)),
    Case("empty data_dir", (C, W, "--config.data.data_dir="), ("data.data_dir",)),
    Case(
        "data_dir is a file", (C, W, "--config.data.data_dir={fresh}"), ("is a file",), setup=_file
    ),
    Case(
        "read-only data_dir",
        (C, W, "--config.data.data_dir=/proc/mer_jax_data"),
        ("not writable",),
    ),
    Case(
        "licensed data, no release",
        (C, W),
        ("samm is built from", "manual_dir"),
        setup=_config_with("config.data.name = 'samm'\nconfig.data.overrides = {}"),
    ),
    Case(
        "empty release folder",
        (C, W, "--config.data.manual_dir={tmp}/empty"),
        ("is empty",),
        setup=_config_with("config.data.name = 'casme2'\nconfig.data.overrides = {}"),
    ),
    Case(
        "init_from nowhere",
        (C, W),
        ("init_from='/nowhere/at/all' is not a folder",),
        setup=_config_with("config.model.name = 'miacnet'\nconfig.init_from = '/nowhere/at/all'"),
    ),
    Case(
        "init_from for a model without branches",
        (C, W, "--config.init_from={tmp}"),
        ("no pre-trainable branches",),
    ),
    # The workdir (checked before loading anything, and before config.json is rewritten).
    Case("workdir of another model", (C, W, "--config.model.name=fr"), ("'ststnet'", "'fr'")),
    Case("workdir of other settings", (C, W, "--config.train.learning_rate=0.01"), ("learning",)),
    Case("resume with another layout", (C, W, "--config.engine.mode=stacked"), ("engine.mode",)),
    Case(
        "truncated config.json",
        (C, F),
        ("config.json", "unreadable"),
        setup=_copy_finished(lambda copy: (copy / "config.json").write_text('{"task": "lo')),
    ),
    Case(
        "eval without checkpoints", (C, "--workdir={tmp}/new", "--mode=eval"), ("No checkpoints",)
    ),
    Case(
        "eval of an unfinished run",
        (C, F, "--mode=eval"),
        ("no finished training",),
        setup=_copy_finished(
            lambda copy: [shutil.rmtree(p) for p in copy.glob("checkpoints/*/40")]
        ),
    ),
    # Only the data can tell.
    Case(
        "batch above a fold's training set",
        (C, "--workdir={tmp}/new", "--config.train.batch_size=9"),
        ("training samples",),
    ),
    Case(
        "more devices than exist",
        (C, "--workdir={tmp}/new", "--config.engine.devices=99"),
        ("engine.devices=99",),
    ),
]


@pytest.fixture(scope="module")
def untouched(finished, synthetic_data_dir):
    """Snapshots of the finished workdir and the data cache, taken once."""
    return snapshot(finished), snapshot(synthetic_data_dir)


@pytest.mark.parametrize("case", CATALOGUE, ids=[case.name for case in CATALOGUE])
def test_catalogue(case, config_file, finished, synthetic_data_dir, untouched, tmp_path):
    values = {"config": str(config_file), "finished": str(finished), "tmp": str(tmp_path)}
    if case.setup is not None:
        values |= case.setup(tmp_path, finished, config_file)
    changed_copy = values.get("fresh")
    before_copy = (
        snapshot(Path(changed_copy)) if changed_copy and Path(changed_copy).is_dir() else None
    )
    code, _, err = main(*(flag.format(**values) for flag in case.flags))
    assert "Traceback" not in err, err[-3000:]
    assert code == case.exit_code, (code, err[-3000:])
    line = error_line(err)
    for fragment in case.fragments:
        assert fragment in line, (fragment, line)
    assert (snapshot(finished), snapshot(synthetic_data_dir)) == untouched
    if before_copy is not None:
        assert snapshot(Path(changed_copy)) == before_copy


def test_the_catalogue_is_large():
    assert len(CATALOGUE) >= 40


def test_every_problem_of_a_config_is_listed_at_once(config_file, finished):
    code, _, err = main(
        f"--config={config_file}",
        f"--workdir={finished}",
        "--config.train.batch_size=0",
        "--config.engine.compute_dtype=fp8",
        "--config.seeds=(1,1)",
    )
    assert code == 2 and "Traceback" not in err
    assert "error: the config has 3 problems:" in err
    for fragment in ("train.batch_size=0", "compute_dtype='fp8'", "seeds=(1, 1)"):
        assert fragment in err


# ---------------------------------------------------------------------------------------
# Faults.
# ---------------------------------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
sys.path.insert(0, {root!r})
from mer_jax.guards import FileLock
lock = FileLock(__import__("pathlib").Path({path!r}), "workdir")
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_locked_workdir_is_refused_and_a_dead_holder_taken_over(config_file, tmp_path):
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK.format(root=str(ROOT), path=str(workdir / ".lock"))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        code, _, err = main(f"--config={config_file}", f"--workdir={workdir}")
        assert code == 2
        assert f"in use by pid {holder.pid}" in error_line(err)
        assert not (workdir / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: its lock is taken over, with a note.
    code, _, err = main(f"--config={config_file}", f"--workdir={workdir}")
    assert code == 0, err[-3000:]
    assert f"took over the lock of workdir {workdir} left by pid {holder.pid}" in err


def test_divergence_stops_the_run_naming_replica_and_step(config_file, tmp_path):
    workdir = tmp_path / "diverged"
    code, _, err = main(
        f"--config={config_file}", f"--workdir={workdir}", "--config.train.learning_rate=1e30"
    )
    assert code == 3, err[-3000:]
    line = error_line(err)
    assert "training diverged" in line and "fold 0 (synthetic_me/sub01), seed 0" in line
    assert "steps 1-20" in line
    assert not (workdir / "metrics.json").exists() and not (workdir / "predictions.csv").exists()


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped byte", "deleted file"])
def test_a_damaged_checkpoint_is_named_and_training_falls_back(
    damage, config_file, finished, tmp_path
):
    workdir = tmp_path / "workdir"
    shutil.copytree(finished, workdir)
    step_dir = workdir / "checkpoints" / "chunk_002" / "40"
    target = _largest_file(step_dir / "state")
    if damage == "flipped byte":
        _flip_a_byte(target)
    else:
        target.unlink()
    for name in OUTPUTS:
        (workdir / name).unlink()
    # Evaluation refuses it, naming the step's folder and what to do.
    code, _, err = main(f"--config={config_file}", f"--workdir={workdir}", "--mode=eval")
    assert code == 2, err[-3000:]
    line = error_line(err)
    assert f"checkpoint step 40 in {step_dir.parent} is damaged" in line
    assert "retrain from step 20" in line
    # Training sets it aside and retrains that chunk from step 20: the same results.
    code, _, err = main(f"--config={config_file}", f"--workdir={workdir}")
    assert code == 0, err[-3000:]
    assert "moved aside" in err
    assert list((workdir / "checkpoints_damaged").iterdir())
    for name in ("metrics.json", "predictions.csv"):
        assert (workdir / name).read_bytes() == (finished / name).read_bytes(), name


def test_a_full_disk_is_one_line(config_file, tmp_path, monkeypatch):
    from mer_jax import checkpoint

    def full(self, step, state, meta):
        raise OSError(28, "No space left on device", str(self.directory))

    monkeypatch.setattr(checkpoint.Checkpointer, "save", full)
    code, _, err = main(f"--config={config_file}", f"--workdir={tmp_path / 'workdir'}")
    assert code == 2, err[-3000:]
    line = error_line(err)
    assert "no space left on the disk holding" in line and "MB free" in line


# ---------------------------------------------------------------------------------------
# Killed processes.
# ---------------------------------------------------------------------------------------


def _descendants(pid: int) -> set[int]:
    """The pids of every live descendant of `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return False


def test_a_killed_build_leaves_no_process_and_the_next_build_cleans_up(tmp_path):
    data_dir = tmp_path / "data"
    command = [
        sys.executable,
        "-m",
        "data_builders.cli",
        "synthetic_me",
        f"--data_dir={data_dir}",
        "--overrides.num_subjects=3",
        "--overrides.clips_per_subject=3",
        "--overrides.crop_size=64",
        "--overrides.flow_method=dis",
        "--workers=2",
    ]
    build = subprocess.Popen(
        command, cwd=ROOT, env=launch_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while len(_descendants(build.pid)) < 2:  # its worker processes are up
        assert build.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    workers = _descendants(build.pid)
    build.send_signal(signal.SIGKILL)
    build.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if _alive(pid)], "workers outlived the killed build"
    # The next build finishes, and nothing of the killed one is left.
    rebuilt = subprocess.run(command, cwd=ROOT, env=launch_env(), capture_output=True, text=True)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    leftovers = [p for p in data_dir.rglob("*") if "incomplete." in p.name or ".partial-" in p.name]
    assert not leftovers


KILL_POINTS = 5


def test_killed_again_and_again_ends_byte_identical(synthetic_data_dir, tmp_path):
    """SIGKILL at random moments (start-up, build check, compile, training, checkpoint
    writes, reports) and one SIGINT; each rerun resumes; the end is byte-identical."""
    config = write_config_file(
        tmp_path / "kill.py", synthetic_data_dir, {**SETTINGS, "train.steps": 100}
    )
    whole, killed = tmp_path / "whole", tmp_path / "killed"

    def start(workdir: Path, log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(LAUNCH), f"--config={config}", f"--workdir={workdir}"],
            cwd=ROOT,
            env=launch_env(),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    tic = time.monotonic()
    uninterrupted = start(whole, tmp_path / "whole.log")
    assert uninterrupted.wait(timeout=600) == 0, (tmp_path / "whole.log").read_text()[-3000:]
    duration = time.monotonic() - tic

    rng = random.Random(20261202)
    kills = [rng.uniform(0.5, duration) for _ in range(KILL_POINTS)]
    for attempt, delay in enumerate([*kills, None]):
        log = tmp_path / f"killed_{attempt}.log"
        process = start(killed, log)
        if delay is None:
            assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
            break
        if attempt == 2:
            # The third interruption is a Ctrl-C during training: the run stops at its
            # next sync point, after a checkpoint, and says how to resume.
            before = sum(1 for _ in killed.glob("checkpoints/*/*"))
            deadline = time.monotonic() + 300
            while sum(1 for _ in killed.glob("checkpoints/*/*")) <= before:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            delay = 0.0
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            stop = signal.SIGINT if attempt == 2 else signal.SIGKILL
            process.send_signal(stop)
            code = process.wait(timeout=120)
            text = log.read_text()
            assert "Traceback" not in text, text[-3000:]
            if stop == signal.SIGINT:
                assert code in (130, 0), text[-3000:]
                if code == 130:
                    assert "rerun the same command to resume" in text
    for name in OUTPUTS:
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    timing = json.loads((killed / "timing.json").read_text())
    assert (
        timing["train_samples"] == json.loads((whole / "timing.json").read_text())["train_samples"]
    )


def _events(folder: Path) -> list[tuple[int, bool]]:
    """(step, is a SessionLog START) of every event in a TensorBoard folder's files."""
    from tensorboardX.proto import event_pb2

    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            found.append(
                (event.step, event.HasField("session_log") and event.session_log.status == 1)
            )
    return found


def test_a_resume_purges_the_tensorboard_steps_after_its_checkpoint(
    config_file, finished, tmp_path
):
    workdir = tmp_path / "workdir"
    shutil.copytree(finished, workdir)
    for chunk in (workdir / "checkpoints").iterdir():
        shutil.rmtree(chunk / "40")  # as if killed between the checkpoints at 20 and 40
    for name in OUTPUTS:
        (workdir / name).unlink()
    code, _, err = main(f"--config={config_file}", f"--workdir={workdir}")
    assert code == 0, err[-3000:]
    events = _events(workdir / "tensorboard" / "chunk_000")
    # The resumed process starts by purging the steps from 20 on, which the first wrote.
    assert (20, True) in events
    timing = json.loads((workdir / "timing.json").read_text())
    assert timing["restored_samples"] == 4 * 20 * fixtures.BATCH
    assert timing["train_samples"] == 4 * 40 * fixtures.BATCH
    for name in ("metrics.json", "predictions.csv"):
        assert (workdir / name).read_bytes() == (finished / name).read_bytes()


def test_guards_stop_waits_for_the_sync_point():
    stop = guards.GracefulStop()
    with stop.installed():
        with stop.deferred():
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested == signal.SIGINT  # no exception inside a dispatch
        with pytest.raises(guards.Interrupted, match="rerun the same command"):
            os.kill(os.getpid(), signal.SIGTERM)
