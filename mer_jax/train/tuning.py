"""Leak-free hyper-parameter selection: nested LOSO over `config.tune.grid`.

Under LOSO every subject is a test subject, so a setting picked by its pooled LOSO score
has seen every test subject. Nested selection picks it per outer fold, from that fold's
training subjects alone: inner subject-grouped folds over them (leave one subject out,
or `tune.inner_folds` folds of whole subjects) train every grid point, the point with the
best pooled inner UF1 (mean over the inner seeds; ties go to the first point) is retrained
on the whole outer training set, and only that model predicts the outer test subject,
once. The LOSO engine runs all of it as replicas (`engine.LosoRun`); this module holds
the splits, the scoring, the choice and its record. The grid's points are the stages of
a workdir (`mer_jax.workdir.grid_points`, `apply_point`).

`config.tune.grid` mirrors the config's sections: `{"train": {"learning_rate": (1e-3,
3e-3)}, "model": {"dropout": (0.0, 0.3)}}` is four points, the Cartesian product in the
order of the sorted dotted names.

`config.tune.choices_from` reuses a finished nested run's choices instead of making new
ones: each outer fold is retrained with the point that run chose for it. An ablation
(one module switched off) then differs from its base run in that module alone, still
selected without its test subjects, at the cost of the outer runs only.
"""

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mer_jax import workdir
from mer_jax.data import loso
from mer_jax.errors import UserError
from mer_jax.evaluate import report
from mer_jax.evaluate.metrics import classification_metrics
from mer_jax.workdir import Replica

# (chunk, each real row's test probabilities, the chunk's training curves)
ChunkResult = tuple[workdir.Chunk, np.ndarray, dict[str, list]]


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
    (an index into `workdir.grid_points(config)`). Whether its folds are a run's own is the
    engine's check, once the data is loaded.

    Raises:
        UserError: `source` holds no finished nested run of its own, or its grid is not
            `config`'s.
    """
    source = Path(source).expanduser()
    where = f"tune.choices_from={str(source)!r}"
    metrics_path, csv_path = source / workdir.METRICS_JSON, source / workdir.TUNING_CSV
    if not metrics_path.is_file() or not (source / workdir.PREDICTIONS_CSV).is_file():
        raise UserError(
            f"{where} holds no finished run ({workdir.METRICS_JSON} is written when a run "
            "ends); give the workdir of a finished nested run (a run with tune.grid), or run "
            "it first."
        )
    metrics = json.loads(metrics_path.read_text())
    if metrics.get("selection") != "nested" or not csv_path.is_file():
        raise UserError(
            f"{where} is not a nested run that made its own choices (it has no "
            f"{workdir.TUNING_CSV}); "
            "give the workdir of a run trained with tune.grid and without tune.choices_from."
        )
    ours = {name: list(values) for name, values in workdir.grid_values(config).items()}
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


# ---------------------------------------------------------------------------
# Nested selection in the engine: splits, inner replicas, the choice, its record.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Splits:
    """The train/test masks of every split a run trains: the outer LOSO folds first, then
    (under nested selection that makes its own choices) every outer fold's inner folds.

    Attributes:
        train_masks, test_masks: (splits, samples) booleans.
        names: each split, for messages: "fold 3 (sub04)", "inner fold 1 (...) of fold 3".
        inner: outer fold -> the indices of its inner splits.
    """

    train_masks: np.ndarray
    test_masks: np.ndarray
    names: list[str]
    inner: dict[int, list[int]]


def make_splits(
    config: ml_collections.ConfigDict, folds: loso.Folds, subjects: np.ndarray
) -> Splits:
    """The run's splits: inner folds over each outer fold's training subjects only when
    the run chooses among grid points itself (not under `tune.choices_from`)."""
    num_folds = folds.num_folds
    train_masks, test_masks = [folds.train_mask], [folds.test_mask]
    names = [f"fold {f} ({folds.test_groups[f]})" for f in range(num_folds)]
    inner_splits: dict[int, list[int]] = {}
    if workdir.grid_values(config) and not config.tune.choices_from:
        for f in range(num_folds):
            inner = loso.inner_folds(folds, f, subjects, config.tune.inner_folds)
            start = sum(len(m) for m in train_masks)
            inner_splits[f] = list(range(start, start + inner.num_folds))
            train_masks.append(inner.train_mask)
            test_masks.append(inner.test_mask)
            names += [
                f"inner fold {i} ({group}) of fold {f}" for i, group in enumerate(inner.test_groups)
            ]
    return Splits(np.concatenate(train_masks), np.concatenate(test_masks), names, inner_splits)


def inner_replicas(
    config: ml_collections.ConfigDict, seeds: Sequence[int], splits: Splits
) -> list[Replica]:
    """Every inner run of one grid point: each inner split under each inner seed."""
    return [
        Replica(split, seed)
        for seed in (config.tune.seeds or seeds)
        for f in sorted(splits.inner)
        for split in splits.inner[f]
    ]


def reused_choices(
    config: ml_collections.ConfigDict, folds: loso.Folds, dataset: Any
) -> dict[int, int]:
    """tune.choices_from's choice for each outer fold, once its folds are shown to be
    this run's: the same test groups, and every sample with the same subject, dataset
    and outer fold.

    Raises:
        UserError: the source chose for other folds or was trained on other samples.
    """
    source = config.tune.choices_from
    chosen = read_choices(source, config)
    groups = folds.test_groups
    if set(chosen) != set(groups):
        raise UserError(
            f"tune.choices_from={source!r} chose for the outer folds {sorted(chosen)}, this "
            f"run's are {sorted(groups)}: it is on other data or another split."
        )

    def placed(*columns: np.ndarray) -> set[tuple]:  # (sample, subject, dataset, fold)
        return set(zip(*(column.tolist() for column in columns), strict=True))

    theirs = report.read_predictions_csv(Path(source).expanduser() / workdir.PREDICTIONS_CSV)
    fields = [dataset[name] for name in ("sample_id", "subject", "dataset")]
    if placed(*fields, folds.test_mask.argmax(axis=0)) != placed(
        theirs.sample_id, theirs.subject, theirs.dataset, theirs.fold
    ):
        raise UserError(
            f"tune.choices_from={source!r} was trained on other samples or folds than this "
            "run (same data.name, overrides and split needed); its choices do not apply."
        )
    return {f: chosen[group] for f, group in enumerate(groups)}


def select(
    inner: Sequence[Sequence[ChunkResult]],
    points: Sequence[workdir.Point],
    folds: loso.Folds,
    splits: Splits,
    labels: np.ndarray,
    test_samples: Any,
    num_classes: int,
) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Scores every grid point on every outer fold by its pooled inner predictions and
    chooses one per outer fold. `test_samples(split)` gives a split's test sample indices.
    Returns tuning.csv's rows and outer fold -> point."""
    # (grid point, split) -> [(seed, labels, predictions)]
    pooled: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for g, results in enumerate(inner):
        for chunk, probs, _ in results:
            for row, replica in enumerate(chunk.replicas):
                samples = test_samples(replica.fold)
                entry = (replica.seed, labels[samples], probs[row, : len(samples)].argmax(-1))
                pooled.setdefault((g, replica.fold), []).append(entry)
    rows, choices = [], {}
    for f in range(folds.num_folds):
        scores = []
        for g in range(len(points)):
            parts = [e for split in splits.inner[f] for e in pooled[g, split]]
            scores.append(
                inner_score(
                    np.concatenate([labels for _, labels, _ in parts]),
                    np.concatenate([preds for _, _, preds in parts]),
                    np.concatenate([np.full(len(p), s) for s, _, p in parts]),
                    num_classes,
                )
            )
        choices[f] = choose(scores)
        for g, (point, score) in enumerate(zip(points, scores, strict=True)):
            rows.append(
                {
                    "outer_fold": f,
                    "test_subject": folds.test_groups[f],
                    "grid_point": g,
                    **{name: repr(value) for name, value in point.items()},
                    "inner_uf1": f"{score['uf1']:.6f}",
                    "inner_uar": f"{score['uar']:.6f}",
                    "inner_folds": len(splits.inner[f]),
                    "chosen": g == choices[f],
                }
            )
    return rows, choices


def selection_record(
    config: ml_collections.ConfigDict,
    folds: loso.Folds,
    choices: dict[int, int] | None,
    seeds: Sequence[int],
    num_replicas: int,
) -> dict[str, Any]:
    """What metrics.json says of the selection: "fixed", or "nested" with the grid, how
    the choices were made and the point chosen for each outer test group."""
    if choices is None:
        return {"selection": "fixed"}
    points = workdir.grid_points(config)
    made_by = (
        {"choices_from": str(config.tune.choices_from)}
        if config.tune.choices_from
        else {
            "inner_folds": config.tune.inner_folds or "leave one subject out",
            "inner_seeds": list(config.tune.seeds or seeds),
        }
    )
    return {
        "selection": "nested",
        "tuning": {
            "grid": {k: list(v) for k, v in workdir.grid_values(config).items()},
            **made_by,
            "chosen": {
                folds.test_groups[f]: workdir.describe(points[g])
                for f, g in sorted(choices.items())
            },
            "replicas": num_replicas,
        },
    }
