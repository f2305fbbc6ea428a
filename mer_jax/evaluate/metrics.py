"""MER classification metrics: confusion matrix, UF1, UAR and accuracy.

These are the MEGC definitions. For a set of (true label, predicted label) pairs,
with TP_c, FP_c, FN_c and N_c (= TP_c + FN_c, the true samples of class c):

- UF1 (unweighted F1) = mean over classes of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)
- UAR (unweighted average recall) = mean over classes of TP_c / N_c
- accuracy = sum_c TP_c / number of samples

Callers pass the pooled out-of-fold predictions of all LOSO folds (see
`mer_jax.evaluate.report`): these functions score whatever they are given, once.

Absent classes. A class with N_c = 0 among the scored samples (common on one
source dataset of a composite) has no recall, and its F1 is 0 whatever the model
does (0 if it was predicted, 0/0 if not). It is therefore left out of both the
UF1 and the UAR means, and listed in "absent_classes". Predicting such a class is
still an error: each of those predictions is made on a sample whose true class is
present, so it is a false negative of that true class (lowering that class's F1
and recall) and lowers accuracy. The predictions are the absent class's false
positives, and they enter no other class's F1: FP_c only ever counts for class c,
whose F1 is dropped.
"""

from typing import Any

import numpy as np
import numpy.typing as npt


def _validated(
    labels: npt.ArrayLike, preds: npt.ArrayLike, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Returns labels and preds as int64 arrays after checking they can be scored."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"num_classes must be an int, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    arrays = {"labels": np.asarray(labels), "preds": np.asarray(preds)}
    for name, values in arrays.items():
        if values.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D (one class index per sample), got shape {values.shape}"
            )
    if len(arrays["labels"]) != len(arrays["preds"]):
        raise ValueError(
            f"labels and preds must be aligned, one pair per sample: got "
            f"{len(arrays['labels'])} labels and {len(arrays['preds'])} preds"
        )
    if len(arrays["labels"]) == 0:
        raise ValueError("no samples to score: labels and preds are empty")
    for name, values in arrays.items():
        # Checked after the emptiness test because np.asarray([]) is float64.
        if values.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class indices, got dtype {values.dtype}")
        outside = (values < 0) | (values >= num_classes)
        if outside.any():
            first = int(np.flatnonzero(outside)[0])
            raise ValueError(
                f"{name}[{first}] = {values[first]} is not a class index in "
                f"[0, {num_classes}) ({int(outside.sum())} such value(s))"
            )
    return arrays["labels"].astype(np.int64), arrays["preds"].astype(np.int64)


def confusion_matrix(labels: npt.ArrayLike, preds: npt.ArrayLike, num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) pairs: rows are the true label, columns the prediction.

    Args:
        labels: (n,) true class indices in [0, num_classes).
        preds: (n,) predicted class indices in [0, num_classes).
        num_classes: number of classes C.

    Returns:
        (C, C) int64 array; entry [t, p] is the number of samples of class t predicted as p.
    """
    labels, preds = _validated(labels, preds, num_classes)
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def classification_metrics(
    labels: npt.ArrayLike, preds: npt.ArrayLike, num_classes: int
) -> dict[str, Any]:
    """UF1, UAR, accuracy and the confusion matrix of one set of predictions.

    Classes with no true sample are excluded from the UF1 and UAR means (see the
    module docstring for exactly what that does to their predictions).

    Args:
        labels: (n,) true class indices in [0, num_classes).
        preds: (n,) predicted class indices in [0, num_classes).
        num_classes: number of classes C.

    Returns:
        A JSON-ready dict with "uf1", "uar", "accuracy" (floats), "n_samples" (int),
        "confusion_matrix" (C lists of C ints, rows = true label), "absent_classes"
        (sorted class indices with no true sample) and "per_class" (a list of C dicts
        with "f1" and "recall", None for an absent class, "support" = N_c and
        "n_predicted" = how often the class was predicted).
    """
    return confusion_metrics(confusion_matrix(labels, preds, num_classes))


def confusion_metrics(confusion: npt.ArrayLike) -> dict[str, Any]:
    """`classification_metrics` of the predictions a (C, C) confusion matrix counts (rows
    the true label): a run's matrix summed over its seeds gives its per-class F1 pooled
    over them."""
    confusion = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(confusion)
    support = confusion.sum(axis=1)
    n_predicted = confusion.sum(axis=0)
    fp = n_predicted - tp
    fn = support - tp
    present = support > 0
    # With N_c > 0 both denominators are positive, so no division by zero remains.
    f1 = np.where(present, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    recall = np.where(present, tp / np.maximum(support, 1), np.nan)
    return {
        "uf1": float(f1[present].mean()),
        "uar": float(recall[present].mean()),
        "accuracy": float(tp.sum() / support.sum()),
        "n_samples": int(support.sum()),
        "confusion_matrix": confusion.tolist(),
        "absent_classes": np.flatnonzero(~present).tolist(),
        "per_class": [
            {
                "f1": float(f1[c]) if present[c] else None,
                "recall": float(recall[c]) if present[c] else None,
                "support": int(support[c]),
                "n_predicted": int(n_predicted[c]),
            }
            for c in range(len(confusion))
        ],
    }
