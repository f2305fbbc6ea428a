"""More than one machine, on one: two processes of launch.py, two CPU devices each, one
global mesh of four (JAX's multi-controller runtime, gloo collectives, a coordinator on
localhost), against one process with four devices.
"""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import fixtures
import pytest
from fixtures import LAUNCH, ROOT, write_config_file

synthetic_data_dir = fixtures.synthetic_data_dir

# Stacked over the four devices of either layout (sequential uses one device).
LOSO = {"engine.mode": "stacked", "seeds": (0,), "train.steps": 60}
OUTPUTS = ("metrics.json", "predictions.csv")


def _env(devices: int) -> dict[str, str]:
    env = {**fixtures.launch_env(), "JAX_NUM_CPU_DEVICES": str(devices)}
    env.pop("XLA_FLAGS", None)  # the suite's 8 host devices are this process's, not theirs
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def start(config: Path, workdir: Path, log: Path, process: int | None = None, port: int = 0):
    """launch.py as one process of two (two devices), or alone (four devices)."""
    command = [sys.executable, str(LAUNCH), f"--config={config}", f"--workdir={workdir}"]
    if process is not None:
        command += [
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={process}",
        ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=_env(4 if process is None else 2),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def run_two(config: Path, workdir: Path, logs: Path, tag: str, kill_after_checkpoint=False):
    """Both processes to the end (exit 0), or both SIGKILLed after a first checkpoint."""
    port = _free_port()
    processes = [
        start(config, workdir, logs / f"{tag}_{p}.log", process=p, port=port) for p in (0, 1)
    ]
    try:
        if kill_after_checkpoint:
            deadline = time.monotonic() + 300
            while not list(workdir.glob("checkpoints/**/20")):
                assert all(p.poll() is None for p in processes), _tail(logs, tag)
                assert time.monotonic() < deadline, _tail(logs, tag)
                time.sleep(0.05)
            for p in processes:
                p.send_signal(signal.SIGKILL)
        for p in processes:
            p.wait(timeout=600)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    if not kill_after_checkpoint:
        assert [p.returncode for p in processes] == [0, 0], _tail(logs, tag)


def _tail(logs: Path, tag: str) -> str:
    return "\n".join(path.read_text()[-2000:] for path in sorted(logs.glob(f"{tag}_*.log")))


@pytest.fixture(scope="module")
def loso_runs(synthetic_data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    config = write_config_file(root / "loso.py", synthetic_data_dir, LOSO)
    single = start(config, root / "single", root / "single.log")
    assert single.wait(timeout=600) == 0, (root / "single.log").read_text()[-3000:]
    tic = time.monotonic()
    run_two(config, root / "two", root, "two")
    two_s = time.monotonic() - tic
    run_two(config, root / "killed", root, "killed", kill_after_checkpoint=True)
    run_two(config, root / "killed", root, "resumed")
    return root, two_s


def test_two_processes_train_the_same_models_as_one(loso_runs):
    root, _ = loso_runs
    for name in OUTPUTS:
        assert (root / "two" / name).read_bytes() == (root / "single" / name).read_bytes(), name
    # Process 0 alone wrote the reports: one set of outputs, one TensorBoard.
    metrics = json.loads((root / "two" / "metrics.json").read_text())
    assert metrics["n_folds"] == fixtures.NUM_SUBJECTS
    timing = json.loads((root / "two" / "timing.json").read_text())
    assert timing["num_devices"] == 4 and timing["mode"] == "stacked"


def test_both_processes_killed_and_restarted_end_the_same(loso_runs):
    root, _ = loso_runs
    for name in OUTPUTS:
        assert (root / "killed" / name).read_bytes() == (root / "single" / name).read_bytes()
    timing = json.loads((root / "killed" / "timing.json").read_text())
    assert timing["restored_samples"] > 0  # it resumed, rather than starting again


MACRO = {
    "num_subjects": 2,
    "clips_per_subject": 1,
    "crop_size": 64,
    "pair_size": 32,
    "pairs_per_clip": 8,
}


def test_pretraining_splits_the_corpus_and_matches_one_process(tmp_path):
    config = tmp_path / "pretrain.py"
    changes = {
        "data.data_dir": str(tmp_path / "data"),
        "data.overrides": MACRO,
        "data.streaming": "grain",
        "model.recon_size": 14,
        "model.decoder_features": (8,),
        "model.input_size": 14,
        "model.action_features": (8,),
        "model.embed_features": 8,
        "model.vit_depth": 1,
        "model.vit_heads": 2,
        # Flips are drawn per batch row; the two layouts order a batch's rows otherwise.
        "model.hflip": False,
        "train.steps": 10,
        "train.batch_size": 8,
        "train.warmup_steps": 0,
        "train.checkpoint_every": 5,
        "engine.steps_per_dispatch": 5,
    }
    lines = ["from configs import ma2mi_pretrain", "", "", "def get_config():"]
    lines.append("    config = ma2mi_pretrain.get_config()")
    lines += [f"    config.{key} = {value!r}" for key, value in changes.items()]
    lines.append("    return config")
    config.write_text("\n".join(lines) + "\n")
    single = start(config, tmp_path / "single", tmp_path / "single.log")
    assert single.wait(timeout=600) == 0, (tmp_path / "single.log").read_text()[-3000:]
    run_two(config, tmp_path / "two", tmp_path, "pretrain")
    one, two = (
        json.loads((tmp_path / w / "pretrain_metrics.json").read_text()) for w in ("single", "two")
    )
    reads = two["corpus_reads"]
    assert len(reads["per_process"]) == 2 and min(reads["per_process"]) > 0
    assert reads["read_by_several_processes"] == 0
    assert two["num_devices"] == one["num_devices"] == 4
    for name, value in one["final_train"].items():
        assert two["final_train"][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name


def test_process_flags_go_together(tmp_path):
    from launch import main

    code = main(["launch.py", "--config=configs/ststnet.py", "--num_processes=2"])
    assert code == 2

