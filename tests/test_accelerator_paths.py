"""The engine's accelerator-only paths, run on the CPU and checked against the sequential run.

On a GPU or TPU the engine trains stacked replicas under `lax.scan` (several steps a
dispatch), chunks the stack by the device's memory, pads the last chunk to the devices
and may compute in bfloat16; a CPU run takes none of these by default. Here each is
forced on the 8 test devices (tests/conftest.py) and compared with the one-replica-at-a-
time baseline of tests/test_engine.py (`sequential`: seeds 0 and 1, one jitted step per
call):

- stacked + scan, 20 steps a dispatch, 4 folds x 5 seeds = 20 replicas in one chunk
  padded to 24 rows (3 a device): the rows of seeds 0 and 1 equal the baseline;
- the same under a simulated device memory limit: 3 chunks (8, 8 and 4 rows, the last
  padded to 8) give the one-chunk results, and a run stopped in its second chunk resumes
  to the same bytes;
- bfloat16 compute trains, and its UF1 stays within BF16_UF1_TOLERANCE of float32;
- `engine.mode=auto` and `engine.loop=auto` on a (mocked) GPU or TPU backend pick stacked
  + scan.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import fixtures
import jax
import ml_collections
import numpy as np
import pytest
import test_engine
from fixtures import make_run, tiny_config
from test_engine import (
    HEADLINE,
    Trained,
    assert_same_metrics,
    assert_same_predictions,
    read_predictions,
    train,
)

from mer_jax.train import engine, stacking

# The session's tiny dataset and test_engine's sequential baseline, fixtures here too.
synthetic_data_dir = fixtures.synthetic_data_dir
sequential = test_engine.sequential

SEEDS = (0, 1, 2, 3, 4)
STACKED_SCAN = {
    "engine.mode": "stacked",
    "engine.loop": "scan",
    "engine.devices": -1,
    "engine.steps_per_dispatch": 20,
    "seeds": SEEDS,
}
# How far bfloat16's headline metrics may fall from float32's (both seeds 0 and 1 of the
# tiny build): 11 labelled samples a seed, so one changed prediction moves UF1 by up to
# about 0.1, and bfloat16 (8 mantissa bits) may change a near tie.
BF16_UF1_TOLERANCE = 0.1


def fake_memory(monkeypatch: pytest.MonkeyPatch, bytes_limit: int) -> None:
    """Makes every device report `bytes_limit` bytes of memory, none in use, as a GPU does
    (the CPU reports none, so the engine would never chunk)."""
    device_type = type(jax.devices()[0])
    monkeypatch.setattr(
        device_type, "memory_stats", lambda self: {"bytes_limit": bytes_limit, "bytes_in_use": 0}
    )


# A device far too small for two replicas: one a device, so 8 a chunk.
SMALL_DEVICE = 2**20
# A device that holds them all.
LARGE_DEVICE = 2**40


def stacked_scan_config(data_dir: Path, changes: dict[str, Any] | None = None):
    return tiny_config(data_dir, {**STACKED_SCAN, **(changes or {})})


@pytest.fixture(scope="module")
def one_chunk(synthetic_data_dir, tmp_path_factory) -> Trained:
    with pytest.MonkeyPatch.context() as patch:
        fake_memory(patch, LARGE_DEVICE)
        return train(stacked_scan_config(synthetic_data_dir), tmp_path_factory.mktemp("one"))


@pytest.fixture(scope="module")
def three_chunks(synthetic_data_dir, tmp_path_factory) -> Trained:
    with pytest.MonkeyPatch.context() as patch:
        fake_memory(patch, SMALL_DEVICE)
        return train(stacked_scan_config(synthetic_data_dir), tmp_path_factory.mktemp("three"))


def rows_of_seeds(predictions, seeds: tuple[int, ...]):
    """The rows of the given seeds, every column (a Predictions of its own)."""
    keep = np.isin(predictions.seed, seeds)
    columns = {f.name: getattr(predictions, f.name)[keep] for f in dataclasses.fields(predictions)}
    return type(predictions)(**columns)


def test_stacked_scan_with_padding_rows_equals_sequential(one_chunk, sequential):
    run = one_chunk.run
    assert (run.mode, run.loop, run.steps_per_call) == ("stacked", "scan", 20)
    (chunk,) = run.chunks()
    assert len(chunk.replicas) == 20 and chunk.padded_size == 24  # 4 padding rows
    for shape, sharding in one_chunk.layouts[0]:
        assert shape[0] == 24 and sharding.shard_shape(shape)[0] == 3
    stacked = read_predictions(one_chunk.workdir)
    assert len(stacked) == len(SEEDS) * 11  # padding rows never reported
    baseline = read_predictions(sequential.workdir)
    if not assert_same_predictions(rows_of_seeds(stacked, (0, 1)), baseline):
        for seed in ("0", "1"):
            for key in HEADLINE:
                assert one_chunk.metrics["per_seed"][seed][key] == pytest.approx(
                    sequential.metrics["per_seed"][seed][key], abs=1e-9
                )


def test_a_memory_limit_splits_the_stack_into_3_chunks_with_the_same_results(
    one_chunk, three_chunks
):
    stats = three_chunks.run.stats
    assert (stats.num_chunks, stats.replicas_per_chunk) == (3, 8)
    with pytest.MonkeyPatch.context() as patch:
        fake_memory(patch, SMALL_DEVICE)
        chunks = three_chunks.run.chunks()
    assert [(len(c.replicas), c.padded_size) for c in chunks] == [(8, 8), (8, 8), (4, 8)]
    assert one_chunk.run.stats.num_chunks == 1
    chunked, whole = read_predictions(three_chunks.workdir), read_predictions(one_chunk.workdir)
    if not assert_same_predictions(chunked, whole):
        assert_same_metrics(three_chunks.metrics, one_chunk.metrics)


class Interrupted(Exception):
    """Stands for a killed process."""


class StopsInTheSecondChunk(engine.LosoRun):
    """Stops once the second chunk has saved its first checkpoint (step 20 of 40)."""

    def train_loop(self, *, dispatch, checkpointer, **kwargs):
        def stopping(state, step):
            if checkpointer.directory.name == "chunk_001" and step > 0:
                checkpointer.close()  # the step-20 checkpoint is complete
                raise Interrupted
            return dispatch(state, step)

        return super().train_loop(dispatch=stopping, checkpointer=checkpointer, **kwargs)


def test_resume_across_chunks_gives_the_uninterrupted_bytes(
    synthetic_data_dir, three_chunks, tmp_path, monkeypatch
):
    fake_memory(monkeypatch, SMALL_DEVICE)
    config = stacked_scan_config(synthetic_data_dir)
    with pytest.raises(Interrupted):
        make_run(config, tmp_path, StopsInTheSecondChunk).train()
    assert not (tmp_path / "metrics.json").exists()
    resumed = make_run(config, tmp_path)
    metrics = resumed.train()
    whole = three_chunks.workdir
    assert (tmp_path / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()
    assert metrics == three_chunks.metrics
    # Chunk 0 was restored finished, chunk 1 from step 20, chunk 2 from scratch; the
    # timing counts what both processes trained: the 20 real rows' 40 steps, once each.
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["train_samples"] == 20 * 40 * fixtures.BATCH
    assert timing["num_chunks"] == 3


def test_bfloat16_stacked_scan_trains_within_tolerance_of_float32(
    synthetic_data_dir, sequential, tmp_path
):
    config = stacked_scan_config(
        synthetic_data_dir, {"engine.compute_dtype": "bfloat16", "seeds": (0, 1)}
    )
    metrics = make_run(config, tmp_path).train()
    bf16, f32 = read_predictions(tmp_path), read_predictions(sequential.workdir)
    np.testing.assert_array_equal(bf16.sample_id, f32.sample_id)
    # It trained (the outputs moved apart), and the dtype took effect.
    assert np.ptp(bf16.probs, axis=0).max() > 0.01
    assert not np.allclose(bf16.probs, f32.probs, rtol=0, atol=1e-6)
    for key in HEADLINE:
        assert abs(metrics[key] - sequential.metrics[key]) <= BF16_UF1_TOLERANCE, key


@pytest.mark.parametrize("backend", ["gpu", "tpu"])
def test_auto_picks_stacked_and_scan_on_an_accelerator(
    backend, synthetic_data_dir, tmp_path, monkeypatch
):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    automatic = ml_collections.ConfigDict({"mode": "auto", "loop": "auto"})
    resolved = (stacking.resolve_mode(automatic), stacking.resolve_loop(automatic))
    assert resolved == ("stacked", "scan")
    config = tiny_config(synthetic_data_dir)
    assert (config.engine.mode, config.engine.loop) == ("auto", "auto")
    run = make_run(config, tmp_path)
    assert (run.mode, run.loop, run.steps_per_call) == ("stacked", "scan", 20)
    assert run.mesh.shape["fold"] == 8 and run.stats.backend == backend
