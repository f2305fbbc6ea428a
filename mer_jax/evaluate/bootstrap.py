"""Subject-level bootstrap: 95% intervals for UF1 and UAR, and paired differences.

Under LOSO the unit of generalisation is the person, so the resampling unit is the
subject: a resample draws as many subjects as the predictions hold, with replacement,
and scores all their samples (the seeds' predictions of a drawn subject come with it).
A statistic is computed per seed on the pooled predictions of the resample (UF1 and
UAR with the report's policy: a class with no true sample in the resample is left out
of the mean), then averaged over seeds. The interval is the 2.5th and 97.5th
percentiles over the resamples.

Everything is counted once per (subject, seed) as confusion matrices, so a resample is
one weighted sum: thousands of resamples take well under a second.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
METHOD = {
    "unit": "subject",
    "resamples": RESAMPLES,
    "level": LEVEL,
    "interval": "percentile",
    "statistic": "mean over seeds of the pooled metric",
}


def subject_confusions(
    subjects: np.ndarray,
    seeds: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    num_classes: int,
    subject_order: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[str], list[int]]:
    """(S, seeds, C, C) confusion counts (rows true, columns predicted) per subject and
    seed, with the subjects (sorted, or `subject_order`) and seeds they index."""
    subjects = np.asarray(subjects).astype(str)
    names = list(subject_order) if subject_order is not None else sorted(set(subjects.tolist()))
    seed_list = sorted(set(np.asarray(seeds).tolist()))
    s = np.searchsorted(np.asarray(names), subjects) if subject_order is None else np.array(
        [names.index(name) for name in subjects]
    )
    k = np.searchsorted(np.asarray(seed_list), seeds)
    flat = ((s * len(seed_list) + k) * num_classes + labels) * num_classes + preds
    counts = np.bincount(flat, minlength=len(names) * len(seed_list) * num_classes**2)
    return counts.reshape(len(names), len(seed_list), num_classes, num_classes), names, seed_list


def scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """UF1 and UAR of (..., C, C) confusion counts, classes without a true sample left out
    of the means (NaN when no class has one), as in `metrics.classification_metrics`."""
    confusion = np.asarray(confusion, np.float64)
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    true = confusion.sum(-1)
    predicted = confusion.sum(-2)
    present = true > 0
    count = present.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2 * tp / (true + predicted), 0.0)
        recall = np.where(present, tp / np.where(present, true, 1), 0.0)
        return {
            "uf1": np.where(count > 0, f1.sum(-1) / count, np.nan),
            "uar": np.where(count > 0, recall.sum(-1) / count, np.nan),
        }


def resample_weights(num_subjects: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, S) how many times each subject is drawn in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_subjects, size=(resamples, num_subjects))
    return np.stack([np.bincount(row, minlength=num_subjects) for row in draws])


def _seed_mean(confusions: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per resample: the statistic per seed on the weighted pooled counts, mean over seeds."""
    pooled = np.einsum("rs,skij->rkij", weights, confusions)  # (R, seeds, C, C)
    return {name: np.nanmean(values, axis=-1) for name, values in scores(pooled).items()}


def interval(
    subjects: np.ndarray,
    seeds: np.ndarray,
    labels: np.ndarray,
    preds: np.ndarray,
    num_classes: int,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """The 95% subject-bootstrap interval of UF1 and UAR: {"uf1": [low, high], ...}."""
    confusions, names, _ = subject_confusions(subjects, seeds, labels, preds, num_classes)
    weights = resample_weights(len(names), resamples, seed)
    return _percentiles(_seed_mean(confusions, weights))


def _percentiles(samples: Mapping[str, np.ndarray]) -> dict[str, list[float]]:
    tail = 100 * (1 - LEVEL) / 2
    return {
        name: [float(np.nanpercentile(values, tail)), float(np.nanpercentile(values, 100 - tail))]
        for name, values in samples.items()
    }


def paired_difference(
    first: Mapping[str, np.ndarray],
    second: Mapping[str, np.ndarray],
    num_classes: int,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """UF1 and UAR of two runs on the same samples and seeds, their difference (first
    minus second) and its 95% interval, both resampled with the same subjects.

    Args:
        first, second: "subject", "seed", "label", "pred" arrays of each run, rows
            already matched (same samples in the same order).
        num_classes: C.
    """
    confusions = []
    names = None
    for run in (first, second):
        counts, names, _ = subject_confusions(
            run["subject"], run["seed"], run["label"], run["pred"], num_classes, names
        )
        confusions.append(counts)
    every = np.ones((1, len(names)))
    point = [_seed_mean(c, every) for c in confusions]
    weights = resample_weights(len(names), resamples, seed)
    first_r, second_r = (_seed_mean(c, weights) for c in confusions)
    differences = {name: first_r[name] - second_r[name] for name in first_r}
    return {
        name: {
            "first": float(point[0][name][0]),
            "second": float(point[1][name][0]),
            "difference": float(point[0][name][0] - point[1][name][0]),
            "interval": _percentiles(differences)[name],
        }
        for name in ("uf1", "uar")
    } | {"subjects": len(names)}
