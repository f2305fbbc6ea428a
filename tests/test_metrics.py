"""UF1 / UAR / accuracy / confusion matrix against hand-computed cases."""

import numpy as np
import pytest

from mer_jax.evaluate.metrics import classification_metrics, confusion_matrix, confusion_metrics


def test_three_class_example_by_hand():
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 2, 2]
    # class 0: TP 2, FP 0, FN 1 -> F1 = 4/5,        recall = 2/3
    # class 1: TP 1, FP 1, FN 1 -> F1 = 2/4 = 1/2,  recall = 1/2
    # class 2: TP 1, FP 1, FN 0 -> F1 = 2/3,        recall = 1
    # UF1 = (4/5 + 1/2 + 2/3) / 3, UAR = (2/3 + 1/2 + 1) / 3, accuracy = 4/6
    scores = classification_metrics(labels, preds, 3)
    assert scores["uf1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert scores["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert scores["accuracy"] == pytest.approx(4 / 6)
    assert scores["n_samples"] == 6
    assert scores["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert scores["absent_classes"] == []
    assert [c["f1"] for c in scores["per_class"]] == pytest.approx([4 / 5, 1 / 2, 2 / 3])
    assert [c["recall"] for c in scores["per_class"]] == pytest.approx([2 / 3, 1 / 2, 1])
    assert [c["support"] for c in scores["per_class"]] == [3, 2, 1]
    assert [c["n_predicted"] for c in scores["per_class"]] == [2, 2, 2]
    # A stored confusion matrix (a run's, summed over seeds) gives the same scores.
    assert confusion_metrics(scores["confusion_matrix"]) == scores


def test_confusion_matrix_rows_are_true_labels():
    confusion = confusion_matrix(np.array([0, 0, 1]), np.array([1, 1, 1]), 2)
    assert confusion.dtype.kind == "i"
    np.testing.assert_array_equal(confusion, [[0, 2], [0, 1]])


def test_perfect_predictions_score_one():
    labels = np.array([0, 1, 2, 2, 1, 0, 3])
    scores = classification_metrics(labels, labels, 4)
    assert scores["uf1"] == scores["uar"] == scores["accuracy"] == 1.0


def test_absent_class_is_excluded_and_listed_even_when_predicted():
    labels = [0, 0, 1, 1]
    preds = [0, 2, 1, 1]
    # class 2 has no true sample but is predicted once, on a class-0 sample:
    # class 0: TP 1, FP 0, FN 1 -> F1 = 2/3, recall = 1/2 (the wrong "2" is its FN)
    # class 1: TP 2, FP 0, FN 0 -> F1 = 1,   recall = 1   (class 2's FP is not its FP)
    # class 2: excluded from both means.
    scores = classification_metrics(labels, preds, 3)
    assert scores["absent_classes"] == [2]
    assert scores["uf1"] == pytest.approx((2 / 3 + 1) / 2)
    assert scores["uar"] == pytest.approx((1 / 2 + 1) / 2)
    assert scores["accuracy"] == pytest.approx(3 / 4)
    assert scores["per_class"][2] == {"f1": None, "recall": None, "support": 0, "n_predicted": 1}


def test_absent_class_never_predicted():
    scores = classification_metrics([0, 1], [0, 1], 3)
    assert scores["absent_classes"] == [2]
    assert scores["uf1"] == scores["uar"] == 1.0


@pytest.mark.parametrize(
    ("labels", "preds", "num_classes", "error", "message"),
    [
        ([0, 1], [0], 2, ValueError, "2 labels and 1 preds"),
        ([0, 3], [0, 1], 3, ValueError, r"labels\[1\] = 3 is not a class index in \[0, 3\)"),
        ([0, 1], [0, -1], 3, ValueError, r"preds\[1\] = -1"),
        ([], [], 3, ValueError, "no samples"),
        ([0.0, 1.0], [0, 1], 2, TypeError, "integer class indices"),
        ([[0, 1]], [[0, 1]], 2, ValueError, "must be 1-D"),
        ([0, 1], [0, 1], 0, ValueError, "num_classes must be at least 1"),
    ],
)
def test_invalid_inputs_are_explained(labels, preds, num_classes, error, message):
    with pytest.raises(error, match=message):
        classification_metrics(labels, preds, num_classes)
