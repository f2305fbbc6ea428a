"""The fold-parallel LOSO engine, trained for real on a tiny synthetic_me build.

Compilation dominates these tests, so each training layout runs once per module
(module-scoped fixtures) and the tests inspect its workdir.
"""

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import fixtures
import jax
import ml_collections
import numpy as np
import pytest
from fixtures import (
    NUM_SUBJECTS,
    make_run,
    tiny_config,
)

from configs import common, ststnet
from mer_jax import workdir
from mer_jax.evaluate import report
from mer_jax.train import engine

# The stacked and the sequential layouts compute the same float32 functions with
# different batching (vmap over 8 replicas vs one), so XLA may reorder reductions:
# probabilities must agree to this absolute tolerance, and predicted labels may only
# differ where the top two probabilities are within 2 * PROB_ATOL (a near-tie).
PROB_ATOL = 1e-4
OUTPUTS = ("metrics.json", "predictions.csv", "confusion_matrix.png", "curves.png")
HEADLINE = ("uf1", "uar", "accuracy")
NUM_CLASSES = 5  # casme2_5class, synthetic_me's protocol

# The session's tiny dataset, a fixture of this module too.
synthetic_data_dir = fixtures.synthetic_data_dir


@dataclasses.dataclass
class Trained:
    """A finished run: its engine object, workdir, returned metrics, and the trained state."""

    run: engine.LosoRun
    workdir: Path
    metrics: dict[str, Any]
    # (shape, sharding) of every leaf of each chunk's trained state, in chunk order.
    layouts: list[list[tuple[tuple[int, ...], jax.sharding.Sharding]]]


class RecordingRun(engine.LosoRun):
    """Keeps where each chunk's trained state lives (`_predict` gets it after training)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.layouts = []

    def _predict(self, stage, chunk: workdir.Chunk, state: Any, arrays: dict, report=True):
        self.layouts.append([(leaf.shape, leaf.sharding) for leaf in jax.tree.leaves(state)])
        return super()._predict(stage, chunk, state, arrays, report)


def train(config: ml_collections.ConfigDict, workdir: Path) -> Trained:
    run = make_run(config, workdir, RecordingRun)
    metrics = run.train()
    return Trained(run, workdir, metrics, run.layouts)


@pytest.fixture(scope="module")
def stacked(synthetic_data_dir, tmp_path_factory) -> Trained:
    """All 8 replicas (4 folds x 2 seeds) in one chunk over the 8 test devices."""
    config = tiny_config(
        synthetic_data_dir, {"engine.mode": "stacked", "engine.devices": -1}
    )
    return train(config, tmp_path_factory.mktemp("stacked"))


@pytest.fixture(scope="module")
def sequential(synthetic_data_dir, tmp_path_factory) -> Trained:
    """The same 8 replicas one at a time, on one device."""
    config = tiny_config(synthetic_data_dir, {"engine.mode": "sequential"})
    return train(config, tmp_path_factory.mktemp("sequential"))


def read_predictions(workdir: Path) -> report.Predictions:
    return report.read_predictions_csv(workdir / "predictions.csv")


def assert_same_predictions(a: report.Predictions, b: report.Predictions) -> bool:
    """Same rows, probabilities within PROB_ATOL, labels equal but for near-ties.

    Returns whether any predicted label differs (then metrics may differ too).
    """
    # Both files are sorted by (seed, sample_id), so the rows line up.
    for name in ("sample_id", "dataset", "subject", "fold", "seed", "label"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=PROB_ATOL)
    top_two = np.sort(a.probs, axis=1)[:, -2:]
    near_tie = top_two[:, 1] - top_two[:, 0] < 2 * PROB_ATOL
    differ = a.pred != b.pred
    assert not (differ & ~near_tie).any(), a.sample_id[differ & ~near_tie]
    return bool(differ.any())


def assert_same_metrics(a: dict, b: dict) -> None:
    for key in HEADLINE:
        assert a[key] == pytest.approx(b[key], abs=1e-9), key
        for seed in a["per_seed"]:
            assert a["per_seed"][seed][key] == pytest.approx(b["per_seed"][seed][key], abs=1e-9)
    assert a["confusion_matrix"] == b["confusion_matrix"]


def test_stacked_equals_sequential(stacked, sequential):
    assert stacked.run.mode == "stacked" and sequential.run.mode == "sequential"
    a, b = read_predictions(stacked.workdir), read_predictions(sequential.workdir)
    assert len(a) == 2 * 16  # 2 seeds x the 16 labelled clips
    # Training moved the outputs: the probabilities vary across samples and seeds, so
    # agreeing is not two constant (untrained) models agreeing.
    assert np.ptp(a.probs, axis=0).max() > 0.01
    assert not np.allclose(a.probs[a.seed == 0], a.probs[a.seed == 1], atol=1e-3)
    if not assert_same_predictions(a, b):
        assert_same_metrics(stacked.metrics, sequential.metrics)


def test_stacked_run_shards_the_replicas_over_the_8_device_fold_axis(stacked):
    run = stacked.run
    assert len(jax.devices()) == 8  # conftest.py's forced host device count
    assert run.mesh.shape["fold"] == 8 and run.mesh.size == 8
    assert run.stats.num_chunks == 1 and run.stats.replicas_per_chunk == 8
    (layout,) = stacked.layouts
    assert layout
    for shape, sharding in layout:
        # One replica per device: the leading (replica) axis is split 8 ways, nothing else is.
        assert shape[0] == 8
        assert len(sharding.device_set) == 8
        assert sharding.shard_shape(shape) == (1, *shape[1:]), (shape, sharding)
    # The dataset is replicated: every device samples its replica's batches locally.
    assert run.data["label"].sharding.is_fully_replicated
    assert len(run.data["label"].sharding.device_set) == 8


def test_sequential_run_trains_one_replica_at_a_time_on_one_device(sequential):
    run = sequential.run
    assert run.mesh.size == 1 and run.stats.num_chunks == 8
    assert len(sequential.layouts) == 8
    for layout in sequential.layouts:
        for shape, sharding in layout:
            assert shape[0] == 1 and len(sharding.device_set) == 1


def test_chunked_stack_with_padding_equals_sequential(synthetic_data_dir, sequential, tmp_path):
    """3 replicas per chunk on 8 devices: chunks of 3, 3, 2 real rows, padded to 8 each."""
    config = tiny_config(
        synthetic_data_dir, {"engine.mode": "stacked", "engine.replicas_per_chunk": 3}
    )
    chunked = train(config, tmp_path)
    assert chunked.run.stats.num_chunks == 3
    assert [len(c.replicas) for c in chunked.run.chunks()] == [3, 3, 2]
    assert all(shape[0] == 8 for layout in chunked.layouts for shape, _ in layout)
    # Padding rows are never reported: each sample once per seed (checked when read).
    a, b = read_predictions(tmp_path), read_predictions(sequential.workdir)
    if not assert_same_predictions(a, b):
        assert_same_metrics(chunked.metrics, sequential.metrics)


def test_training_writes_every_output(stacked):
    workdir = stacked.workdir
    for name in (*OUTPUTS, "config.json", "timing.json"):
        assert (workdir / name).is_file() and (workdir / name).stat().st_size > 0, name
    for name in ("confusion_matrix.png", "curves.png"):
        assert (workdir / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
    assert list((workdir / "tensorboard").glob("events.out.tfevents.*"))
    assert [p.name for p in (workdir / "checkpoints").iterdir()] == ["chunk_000"]

    header = (workdir / "predictions.csv").read_text().splitlines()[0].split(",")
    assert header == [
        "sample_id",
        "dataset",
        "subject",
        "fold",
        "seed",
        "label",
        "pred",
        *(f"p_{c}" for c in range(NUM_CLASSES)),
    ]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["n_folds"] == NUM_SUBJECTS and metrics["seeds"] == [0, 1]
    assert metrics["n_samples"] == 16
    assert metrics["uf1"] == pytest.approx(stacked.metrics["uf1"])
    assert np.isfinite([metrics[k] for k in HEADLINE]).all()

    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["name"] == "ststnet" and config["train"]["steps"] == 40
    timing = json.loads((workdir / "timing.json").read_text())
    assert timing["mode"] == "stacked" and timing["num_devices"] == 8
    assert timing["num_replicas"] == 8 and timing["train_samples"] == 8 * 40 * fixtures.BATCH


def copy_workdir(source: Path, destination: Path) -> dict[str, bytes]:
    """Copies a finished workdir and deletes the copy's evaluation outputs; returns them."""
    shutil.copytree(source, destination)
    outputs = {name: (destination / name).read_bytes() for name in OUTPUTS}
    for name in OUTPUTS:
        (destination / name).unlink()
    return outputs


def test_evaluate_reproduces_the_outputs_exactly(stacked, tmp_path):
    workdir = tmp_path / "workdir"
    before = copy_workdir(stacked.workdir, workdir)
    metrics = make_run(stacked.run.config, workdir).evaluate()
    for name in OUTPUTS:
        assert (workdir / name).is_file(), name
    assert json.loads((workdir / "metrics.json").read_bytes()) == json.loads(before["metrics.json"])
    assert (workdir / "predictions.csv").read_bytes() == before["predictions.csv"]
    assert {k: metrics[k] for k in HEADLINE} == {k: stacked.metrics[k] for k in HEADLINE}


def test_evaluate_restores_checkpoints_onto_another_layout(sequential, tmp_path):
    """Sequential checkpoints (8 chunks of 1 row) evaluated on the 8-device stacked mesh."""
    workdir = tmp_path / "workdir"
    copy_workdir(sequential.workdir, workdir)
    config = sequential.run.config.copy_and_resolve_references()
    config.engine.mode = "stacked"
    make_run(config, workdir).evaluate()
    if not assert_same_predictions(read_predictions(workdir), read_predictions(sequential.workdir)):
        metrics = json.loads((workdir / "metrics.json").read_text())
        assert_same_metrics(metrics, sequential.metrics)


def test_transfer_guard_is_on_by_default():
    assert common.get_base_config().engine.transfer_guard == "disallow"
    assert ststnet.get_config().engine.transfer_guard == "disallow"


class HostArrayRun(engine.LosoRun):
    """Leaves one per-chunk input on the host: every dispatch would copy it to the device."""

    def _chunk_arrays(self, chunk: workdir.Chunk) -> dict:
        arrays = super()._chunk_arrays(chunk)
        arrays["n_train"] = np.asarray(arrays["n_train"])
        return arrays


def test_transfer_guard_rejects_a_hidden_copy_in_the_training_loop(
    stacked, synthetic_data_dir, tmp_path
):
    # The stacked fixture trained under the default guard, so the loop copies nothing.
    assert stacked.run.config.engine.transfer_guard == "disallow"
    config = tiny_config(synthetic_data_dir, {"engine.mode": "sequential", "seeds": (0,)})
    with pytest.raises(Exception, match="[Dd]isallowed host-to-device transfer"):
        make_run(config, tmp_path, HostArrayRun).train()


def test_bfloat16_compute_trains_to_finite_metrics(synthetic_data_dir, sequential, tmp_path):
    config = tiny_config(
        synthetic_data_dir,
        {"engine.mode": "sequential", "engine.compute_dtype": "bfloat16", "seeds": (0,)},
    )
    metrics = make_run(config, tmp_path).train()
    assert np.isfinite([metrics[k] for k in HEADLINE]).all()
    bf16 = read_predictions(tmp_path)
    assert np.isfinite(bf16.probs).all()
    np.testing.assert_allclose(bf16.probs.sum(axis=1), 1.0, atol=1e-5)
    # The dtype took effect: the same seed in float32 gives other probabilities.
    f32 = read_predictions(sequential.workdir)
    same_seed = f32.seed == 0
    np.testing.assert_array_equal(bf16.sample_id, f32.sample_id[same_seed])
    assert not np.allclose(bf16.probs, f32.probs[same_seed], rtol=0, atol=1e-6)
