"""The AU oracle: a nested ridge classifier on the true AU sets, under LOSO folds."""

import numpy as np

from benchmarks.au_oracle import au_oracle
from mer_jax.data import loso
from mer_jax.evaluate import metrics


def _clips(rng: np.random.Generator, num_subjects: int = 6, per_subject: int = 12):
    subjects = np.repeat(np.arange(num_subjects), per_subject)
    labels = rng.integers(0, 3, len(subjects))
    return subjects, labels


def test_oracle_finds_a_label_its_aus_give_away():
    rng = np.random.default_rng(0)
    subjects, labels = _clips(rng)
    # Each class shows its own AU, plus an AU every class shares at random.
    action_units = np.zeros((len(labels), 8))
    action_units[np.arange(len(labels)), labels] = 1.0
    action_units[:, 5] = rng.integers(0, 2, len(labels))
    folds = loso.leave_one_group_out(subjects)
    preds, chosen = au_oracle(action_units, labels, subjects, folds, 3, [0.01, 0.1, 1.0])
    assert metrics.classification_metrics(labels, preds, 3)["uf1"] == 1.0
    assert len(chosen) == folds.num_folds and set(chosen) <= {0.01, 0.1, 1.0}


def test_oracle_is_at_chance_when_the_aus_say_nothing():
    rng = np.random.default_rng(1)
    subjects, labels = _clips(rng, num_subjects=8, per_subject=20)
    action_units = rng.integers(0, 2, (len(labels), 8)).astype(np.float64)
    folds = loso.leave_one_group_out(subjects)
    preds, _ = au_oracle(action_units, labels, subjects, folds, 3, [0.1, 1.0])
    assert metrics.classification_metrics(labels, preds, 3)["uf1"] < 0.5
