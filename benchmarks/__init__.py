"""Benchmarks: measured figures for the README, not tests. Here: what they share."""

import json
import pathlib
import tempfile
import time


def write_results(out: str | None, results: list[dict]) -> None:
    """Writes `results` as JSON to `out` (its folder created), when `--out` was given."""
    if out:
        path = pathlib.Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))


def measure_loso(config, mode: str, dataset=None, max_replicas: int | None = None) -> dict:
    """Trains the config's LOSO run in `mode` in a fresh workdir; returns its figures.

    `dataset`: the loaded data (default: loaded here, not timed). `max_replicas`: train
    only the first (fold, seed) replicas, for a caller that extrapolates to all of them
    ("replicas" trained, "of_replicas" planned).
    """
    import data_builders
    from mer_jax.train import engine

    config = config.copy_and_resolve_references()
    config.engine.mode = mode
    if dataset is None:
        dataset = data_builders.load(config.data)
    with tempfile.TemporaryDirectory() as workdir:
        run = engine.LosoRun(config, workdir, dataset)
        if max_replicas:
            run.replicas = run.replicas[:max_replicas]
        tic = time.perf_counter()
        metrics = run.train()
        wall = time.perf_counter() - tic
    stats = run.stats
    return {
        "mode": run.mode,
        "loop": run.loop,
        "compute_dtype": config.engine.compute_dtype,
        "wall_s": round(wall, 2),
        "compile_s": round(stats.compile_s, 2),
        "train_s": round(stats.train_s, 2),
        "train_samples_per_s": round(stats.samples_per_s, 1),
        "peak_device_bytes": stats.peak_device_bytes,
        "compiled_bytes_per_device": stats.compiled_bytes_per_device,
        "replicas": len(run.replicas),
        "of_replicas": stats.num_replicas,
        "chunks": stats.num_chunks,
        "devices": stats.num_devices,
        "device_kind": stats.device_kind,
        "backend": stats.backend,
        "uf1": round(metrics["uf1"], 4),
        "uar": round(metrics["uar"], 4),
    }
