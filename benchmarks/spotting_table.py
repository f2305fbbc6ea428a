r"""RESULTS.md's spotting rows, regenerated from one command (resumable).

  python -m benchmarks.spotting_table --root runs/spotting_table
  python -m benchmarks.spotting_table --root runs/spotting_table --rows baseline

Each row is a spotting config of configs/ run under LOSO on synthetic_lv (the training-free
baseline scores every video; the learned spotter is trained with every fold stacked and
scores each video with the models that never saw its subject), in its own workdir below
`--root` by launch.py's own `run` (validation, locking, resume: an interrupted row
resumes where it stopped; a finished row is only re-read). The table gives, per row,
overall, micro and macro precision, recall and F1 with the F1's 95% subject-bootstrap
interval and the TP/FP/FN behind them (`mer_jax.evaluate.spotting`, docs/evaluation.md,
"Spotting"), the build, the training time, the machine and the date the row was trained
on (`row.json` in its workdir). Written into RESULTS.md's `spotting_table` section and
as `spotting_table.md` / `spotting_table.json` into `--root`.
"""

import dataclasses
import datetime
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from absl import flags, logging

from benchmarks import machine, run_app, write_section

# In a row's workdir: the machine and date it was trained on and its wall time.
ROW_JSON = "row.json"


@dataclasses.dataclass(frozen=True)
class Row:
    """One row: its name (and workdir) and its config in configs/."""

    name: str
    config: str


ROWS = (Row("baseline", "spotting_baseline"), Row("learned", "spotting"))


def _define_flags() -> dict[str, flags.FlagHolder]:
    """The command's flags, defined when it runs, not on import: `--root` and `--rows` are
    also results_table's, which a test process may import beside this module."""
    return {
        "root": flags.DEFINE_string(
            "root", "runs/spotting_table", "Folder of the rows' workdirs and the table."
        ),
        "rows": flags.DEFINE_list(
            "rows", None, f"Rows to run ({', '.join(r.name for r in ROWS)}); default all."
        ),
        "data_dir": flags.DEFINE_string("data_dir", None, "Data cache (default: the configs')."),
    }


def row_config(row: Row, data_dir: str | None = None) -> Any:
    """configs/<row.config>.py as launch.py reads it, with the table's data cache."""
    import launch

    config = importlib.import_module(f"configs.{row.config}").get_config()
    launch.with_model_defaults(config)
    if data_dir:
        with config.unlocked():
            config.data.data_dir = data_dir
    return config


def run_row(row: Row, root: Path, config: Any) -> dict[str, Any]:
    """Runs (or resumes, or re-reads) a row with `config` (`row_config`); returns its
    `spotting` metrics and where, when and how long it was trained."""
    import launch
    from mer_jax import guards
    from mer_jax import workdir as layout

    workdir = root / row.name
    metrics_path = workdir / layout.METRICS_JSON
    provenance_path = workdir / ROW_JSON
    if not metrics_path.exists():
        import data_builders

        # Built (when missing) before the clock starts: the baseline's time is its run's,
        # not the first build's.
        data_builders.build_configured(config.data)
        tic = time.perf_counter()
        launch.run(config, workdir, "train")
        provenance = {
            "machine": machine(),
            "date": datetime.date.today().isoformat(),
            "wall_s": round(time.perf_counter() - tic, 1),
        }
        guards.atomic_write_text(provenance_path, json.dumps(provenance, indent=2))
    metrics = json.loads(metrics_path.read_text())
    timing_path = workdir / layout.TIMING_JSON
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    unknown = {"machine": "not recorded", "date": "not recorded", "wall_s": None}
    provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else unknown
    record = json.loads((workdir / layout.DATASET_JSON).read_text())
    return {
        "row": row.name,
        "config": f"configs/{row.config}.py",
        "workdir": str(workdir),
        "spotting": metrics["spotting"],
        "build": record["metadata"].get("build", f"{record['name']} (not recorded)"),
        "train_s": timing.get("train_s"),
        "replicas": timing.get("num_replicas"),
        **provenance,
    }


def _training(result: dict[str, Any]) -> str:
    """The learned row's training time and replicas; the baseline's whole run."""
    if result["train_s"] is not None:
        return f"{result['train_s']:,.0f} s ({result['replicas']} replicas)"
    if result["wall_s"] is not None:
        return f"none (the run: {result['wall_s']:,.0f} s)"
    return "not recorded"


def markdown(results: list[dict[str, Any]]) -> str:
    """One line per row and type: precision, recall, F1 [interval], TP/FP/FN, and the
    row's config, build, training, machine and date."""
    lines = [
        "| spotter | type | precision | recall | F1 [95% interval] | TP | FP | FN | config | "
        "build | training | machine | date |",
        "|---" * 13 + "|",
    ]
    for result in results:
        for kind in ("overall", "micro", "macro"):
            scores = result["spotting"][kind]
            low, high = scores["f1_ci"]
            lines.append(
                f"| {result['row']} | {kind} | {scores['precision']:.3f} | "
                f"{scores['recall']:.3f} | {scores['f1']:.3f} [{low:.3f}, {high:.3f}] | "
                f"{scores['tp']} | {scores['fp']} | {scores['fn']} | `{result['config']}` | "
                f"`{result['build']}` | {_training(result)} | {result['machine']} | "
                f"{result['date']} |"
            )
    return "\n".join(lines) + "\n"


_DESCRIPTION = (
    "Spotting under LOSO on the synthetic long videos: a spotted interval is a true "
    "positive when its frame-set IoU with a ground truth of its type is at least 0.5, "
    "one-to-one, TP/FP/FN pooled over every video (those without an expression too); a "
    "spotted interval is micro when it lasts at most 0.5 s. The interval is the 95% "
    "subject bootstrap of the F1 (docs/evaluation.md, \"Spotting\"). The baseline is "
    "training-free; the learned spotter's videos are each scored by the models that "
    "never saw their subject."
)


def main(argv: list[str], defined: dict[str, flags.FlagHolder]) -> None:
    del argv
    logging.set_verbosity(logging.ERROR)
    root = Path(defined["root"].value)
    asked = defined["rows"].value
    unknown = set(asked or []) - {row.name for row in ROWS}
    if unknown:
        sys.exit(f"error: unknown rows {sorted(unknown)}; rows: {[r.name for r in ROWS]}")
    from mer_jax.errors import UserError

    root.mkdir(parents=True, exist_ok=True)
    results = []
    for row in ROWS:
        # A row not asked for is still shown when an earlier call finished it.
        if asked is not None and row.name not in asked:
            if not (root / row.name / ROW_JSON).exists():
                continue
        print(f"== {row.name}", flush=True)
        try:
            config = row_config(row, defined["data_dir"].value)
            results.append(run_row(row, root, config))
        except UserError as error:
            sys.exit(f"error: row {row.name!r}: {error}")
    table = markdown(results)
    (root / "spotting_table.md").write_text(table)
    (root / "spotting_table.json").write_text(json.dumps(results, indent=2) + "\n")
    write_section(
        "spotting_table",
        "Spotting on the synthetic long videos (synthetic_lv, LOSO)",
        f"{_DESCRIPTION}\n\n{table}",
        "python -m benchmarks.spotting_table",
    )
    print(table)


if __name__ == "__main__":
    _defined = _define_flags()
    run_app(lambda argv: main(argv, _defined))
