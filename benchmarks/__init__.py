"""Benchmarks: measured figures, not tests. Here: what they share.

Every benchmark that measures a figure a user reads writes it into RESULTS.md through
`write_section`: one section a benchmark (or a benchmark's setting), replaced whole on
each run, headed by the command that produced it, the machine and the date. Nothing in
RESULTS.md is written by hand.
"""

import datetime
import json
import os
import pathlib
import platform
import re
import tempfile
import time

RESULTS_MD = pathlib.Path(__file__).resolve().parent.parent / "RESULTS.md"

_PREAMBLE = """# Results

Every table here is written by the benchmark named above it (the command, the machine and
the date are part of each section); rerunning that command replaces its section. See
README.md for what each method is and docs/evaluation.md for how the figures are made.
"""


def machine() -> str:
    """The machine a figure was measured on: the accelerator when JAX has one, else the
    CPU model and the cores this process may use."""
    try:
        import jax

        devices = jax.devices()
        if devices[0].platform != "cpu":
            return f"{len(devices)} x {devices[0].device_kind} ({devices[0].platform})"
    except Exception:  # noqa: BLE001 - no JAX backend: describe the CPU alone
        pass
    model = platform.processor() or platform.machine()
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        if found:
            model = found.group(1).strip()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores (CPU)"


def command_line(module: str) -> str:
    """How this process was started, as a user would type it: `python -m MODULE ARGS`."""
    import shlex
    import sys

    return " ".join(["python -m", module, *map(shlex.quote, sys.argv[1:])])


def write_section(
    key: str,
    title: str,
    body: str,
    command: str,
    path: pathlib.Path | None = None,
    date: str | None = None,
) -> pathlib.Path:
    """Replaces (or appends) the section `key` of RESULTS.md with `body` (markdown),
    headed by `title`, the command, the machine and the date; sections keep their order.
    The file is rewritten atomically."""
    path = RESULTS_MD if path is None else path
    date = date or datetime.date.today().isoformat()
    begin, end = f"<!-- results:{key} begin -->", f"<!-- results:{key} end -->"
    section = (
        f"{begin}\n## {title}\n\n`{command}`, {machine()}, {date}.\n\n{body.rstrip()}\n{end}"
    )
    text = path.read_text() if path.exists() else _PREAMBLE
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


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


def run_app(main) -> None:
    """absl's `app.run(main)`, except that --help prints the help and exits 0 (absl's
    exits 1, which reads as a failure to a script asking a benchmark what it takes)."""
    import sys

    from absl import app

    help_flags = ("-h", "-?", "--help", "--helpshort", "--helpfull")
    if any(arg in help_flags for arg in sys.argv[1:]):
        app.usage(shorthelp="--helpfull" not in sys.argv, writeto_stdout=True)
        sys.exit(0)
    app.run(main)
