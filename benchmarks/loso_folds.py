r"""Folds at once vs one after another: the same LOSO run in both engine layouts.

  python -m benchmarks.loso_folds --config configs/ststnet.py --out runs/bench_loso.json
  python -m benchmarks.loso_folds --config configs/fr.py --config.seeds='(0,)' \
      --modes=stacked,sequential

Each mode trains every fold and seed of the config from scratch in a fresh
workdir and reports wall time (dataset loading excluded, both read the same
cached build), compile time, training samples/s (compile excluded) and peak
device memory (where the backend reports it; otherwise XLA's compiled estimate).
The predictions of both layouts should agree; the benchmark prints both UF1s.
"""

import sys

from absl import flags, logging
from ml_collections import config_flags

import launch
from benchmarks import command_line, measure_loso, run_app, write_results, write_section

_CONFIG = config_flags.DEFINE_config_file("config", "configs/ststnet.py", "Experiment config.")
# Every model field at its default, as launch.py reads a config: any --config.model.X works.
flags.FLAGS["config"].parser = launch.config_file_parser(sys.argv)
_MODES = flags.DEFINE_list("modes", ["stacked", "sequential"], "Engine modes to compare.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint at INFO.
    results = [measure_loso(_CONFIG.value, mode) for mode in _MODES.value]
    header = f"{'mode':<11}{'wall s':>8}{'compile s':>11}{'samples/s':>11}{'peak MB':>9}  UF1"
    print(header)
    for r in results:
        memory = r["peak_device_bytes"] or r["compiled_bytes_per_device"] or 0
        print(
            f"{r['mode']:<11}{r['wall_s']:>8.1f}{r['compile_s']:>11.1f}"
            f"{r['train_samples_per_s']:>11.0f}{memory / 2**20:>9.1f}  {r['uf1']:.4f}"
        )
    if len(results) == 2:
        print(
            f"wall-time ratio {results[0]['mode']}/{results[1]['mode']}: "
            f"{results[0]['wall_s'] / results[1]['wall_s']:.2f}"
        )
    write_results(_OUT.value, results)
    rows = [
        "| mode | wall s | compile s | samples/s | peak MB | UF1 |",
        "|---|---|---|---|---|---|",
    ] + [
        f"| {r['mode']} | {r['wall_s']:.1f} | {r['compile_s']:.1f} | "
        f"{r['train_samples_per_s']:.0f} | "
        f"{(r['peak_device_bytes'] or r['compiled_bytes_per_device'] or 0) / 2**20:.1f} | "
        f"{r['uf1']:.4f} |"
        for r in results
    ]
    write_section(
        f"loso_folds_{_CONFIG.value.model.name}",
        f"Folds at once vs one after another: {_CONFIG.value.model.name}",
        "Peak MB: the device's peak where the backend reports it, else XLA's compiled "
        "estimate per device.\n\n" + "\n".join(rows),
        command_line("benchmarks.loso_folds"),
    )


if __name__ == "__main__":
    run_app(main)
