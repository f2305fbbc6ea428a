"""Leak-free hyper-parameter selection: nested LOSO over `config.tune.grid`.

Under LOSO every subject is a test subject, so a setting picked by its pooled LOSO score
has seen every test subject. Nested selection picks it per outer fold, from that fold's
training subjects alone: inner subject-grouped folds over them (leave one subject out,
or `tune.inner_folds` folds of whole subjects) train every grid point, the point with the
best pooled inner UF1 (mean over the inner seeds; ties go to the first point) is retrained
on the whole outer training set, and only that model predicts the outer test subject,
once. The LOSO engine runs all of it as replicas (`engine.LosoRun`); this module holds
the grid and the scoring.

`config.tune.grid` mirrors the config's sections: `{"train": {"learning_rate": (1e-3,
3e-3)}, "model": {"dropout": (0.0, 0.3)}}` is four points, the Cartesian product in the
order of the sorted dotted names.

`config.tune.choices_from` reuses a finished nested run's choices instead of making new
ones: each outer fold is retrained with the point that run chose for it. An ablation
(one module switched off) then differs from its base run in that module alone, still
selected without its test subjects, at the cost of the outer runs only.
"""

import csv
import io
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mer_jax.errors import UserError
from mer_jax.evaluate import report
from mer_jax.evaluate.metrics import classification_metrics

TUNING_CSV = "tuning.csv"

Point = dict[str, Any]  # dotted config name -> value


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if hasattr(tree, "items") and not isinstance(tree, (str, bytes)):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def grid_values(config: ml_collections.ConfigDict) -> dict[str, tuple[Any, ...]]:
    """The grid as dotted name -> values to try, sorted by name (empty: no tuning)."""
    grid = config.get("tune", {}).get("grid") or {}
    return {name: tuple(values) for name, values in sorted(_flat(grid).items())}


def grid_points(config: ml_collections.ConfigDict) -> list[Point]:
    """Every combination of the grid's values, in a fixed order (empty: no tuning)."""
    values = grid_values(config)
    if not values:
        return []
    return [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]


def apply_point(config: ml_collections.ConfigDict, point: Point) -> ml_collections.ConfigDict:
    """A copy of `config` with a grid point's values set (and no grid: it is one run)."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for dotted, value in point.items():
            *path, name = dotted.split(".")
            holder = config
            for part in path:
                holder = holder[part]
            holder[name] = value
        config.tune.grid = ml_collections.ConfigDict()
        config.tune.choices_from = None
    return config


def describe(point: Point) -> str:
    """A point as "train.learning_rate=0.003, model.dropout=0.3"."""
    return ", ".join(f"{name}={value!r}" for name, value in point.items())


def inner_score(
    labels: np.ndarray, preds: np.ndarray, seeds: np.ndarray, num_classes: int
) -> dict[str, float]:
    """Pooled inner UF1 and UAR of one grid point on one outer fold: per seed over all
    inner test predictions, then the mean over seeds."""
    per_seed = [
        classification_metrics(labels[seeds == seed], preds[seeds == seed], num_classes)
        for seed in sorted(set(seeds.tolist()))
    ]
    return {key: float(np.mean([scores[key] for scores in per_seed])) for key in ("uf1", "uar")}


def choose(scores: Sequence[Mapping[str, float]]) -> int:
    """The grid point with the best inner UF1; a tie goes to the first such point."""
    return int(np.argmax([score["uf1"] for score in scores]))


def tuning_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """tuning.csv's text: one row per (outer fold, grid point) with its inner scores."""
    output = io.StringIO()
    writer = csv.DictWriter(output, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return output.getvalue()


def read_choices(source: str | Path, config: ml_collections.ConfigDict) -> dict[str, int]:
    """The grid point a finished nested run in `source` chose for each outer test group
    (an index into `grid_points(config)`). Whether its folds are a run's own is the
    engine's check, once the data is loaded.

    Raises:
        UserError: `source` holds no finished nested run of its own, or its grid is not
            `config`'s.
    """
    source = Path(source).expanduser()
    where = f"tune.choices_from={str(source)!r}"
    metrics_path, csv_path = source / report.METRICS_JSON, source / TUNING_CSV
    if not metrics_path.is_file() or not (source / report.PREDICTIONS_CSV).is_file():
        raise UserError(
            f"{where} holds no finished run ({report.METRICS_JSON} is written when a run "
            "ends); give the workdir of a finished nested run (a run with tune.grid), or run "
            "it first."
        )
    metrics = json.loads(metrics_path.read_text())
    if metrics.get("selection") != "nested" or not csv_path.is_file():
        raise UserError(
            f"{where} is not a nested run that made its own choices (it has no {TUNING_CSV}); "
            "give the workdir of a run trained with tune.grid and without tune.choices_from."
        )
    ours = {name: list(values) for name, values in grid_values(config).items()}
    if metrics["tuning"]["grid"] != ours:
        raise UserError(
            f"{where} chose over the grid {metrics['tuning']['grid']}, this config's "
            f"tune.grid is {ours}; give it the same grid."
        )
    with csv_path.open(newline="") as file:
        return {
            row["test_subject"]: int(row["grid_point"])
            for row in csv.DictReader(file)
            if row["chosen"] == "True"
        }
