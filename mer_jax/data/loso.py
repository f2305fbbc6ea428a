"""Leave-one-group-out splits: LOSO over namespaced subjects, or one dataset out.

Subjects are namespaced by dataset (`casme2/sub01`, `samm/006`), so a composite
LOSO has one fold per distinct person. Every split is checked: no group is ever
on both the training and the test side of a fold.
"""

import dataclasses

import numpy as np

from mer_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Folds:
    """The folds of one protocol over N samples.

    Attributes:
      test_groups: the held-out group (subject or dataset) of each fold.
      train_mask: (F, N) bool, samples a fold may train on.
      test_mask: (F, N) bool, samples a fold is evaluated on, once, after training.
    """

    test_groups: tuple[str, ...]
    train_mask: np.ndarray
    test_mask: np.ndarray

    @property
    def num_folds(self) -> int:
        return len(self.test_groups)


def leave_one_group_out(groups: np.ndarray) -> Folds:
    """One fold per distinct group (sorted), holding that group out for testing."""
    groups = np.asarray(groups).astype(str)
    test_groups = tuple(sorted(set(groups.tolist())))
    if len(test_groups) < 2:
        raise UserError(
            f"Leave-one-out needs at least 2 groups, the data has {len(test_groups)}: "
            f"{list(test_groups)}."
        )
    test_mask = np.stack([groups == g for g in test_groups])
    folds = Folds(test_groups, ~test_mask, test_mask)
    assert_leak_free(folds, groups)
    return folds


def make_folds(split: str, *, subjects: np.ndarray, datasets: np.ndarray) -> Folds:
    """Folds of the protocol named by `split`: "loso" (subjects) or "lodo" (datasets)."""
    groups = {"loso": subjects, "lodo": datasets}
    if split not in groups:
        raise UserError(f"Unknown data.split {split!r}; use one of {sorted(groups)}.")
    return leave_one_group_out(groups[split])


def assert_leak_free(folds: Folds, subjects: np.ndarray) -> None:
    """Raises if any fold trains on a subject it tests on, or tests a sample twice."""
    subjects = np.asarray(subjects).astype(str)
    for f, group in enumerate(folds.test_groups):
        train_subjects = set(subjects[folds.train_mask[f]].tolist())
        test_subjects = set(subjects[folds.test_mask[f]].tolist())
        shared = train_subjects & test_subjects
        if shared:
            raise AssertionError(f"Fold {f} ({group}) has subjects on both sides: {sorted(shared)}")
        if np.any(folds.train_mask[f] & folds.test_mask[f]):
            raise AssertionError(f"Fold {f} ({group}) trains on a sample it tests on.")
    if np.any(folds.test_mask.sum(axis=0) != 1):
        raise AssertionError("Every sample must be in the test side of exactly one fold.")


def inner_folds(outer: Folds, fold: int, subjects: np.ndarray, k: int = 0) -> Folds:
    """Subject-grouped folds over outer fold `fold`'s training samples only (nested LOSO).

    The outer test subject is on neither side of any of them: an inner fold trains on, and
    tests, the outer fold's training subjects alone.

    Args:
        outer: the outer folds.
        fold: which outer fold's training side to split.
        subjects: (N,) the samples' namespaced subjects.
        k: 0 for leave-one-subject-out; k >= 2 for k folds of whole subjects (the
            sorted subjects dealt round-robin, so the folds are fixed by the data).

    Returns:
        Folds over all N samples (masks False outside the outer training side);
        `test_groups` name each inner fold's test subjects, joined by "+".
    """
    subjects = np.asarray(subjects).astype(str)
    training = outer.train_mask[fold]
    pool = sorted(set(subjects[training].tolist()))
    if k == 1 or len(pool) < max(k, 2):
        raise UserError(
            f"tune.inner_folds={k} cannot split the {len(pool)} training subjects of fold "
            f"{fold} ({outer.test_groups[fold]}); use 0 (leave one subject out) or 2..{len(pool)}."
        )
    groups = [[s] for s in pool] if k == 0 else [pool[i::k] for i in range(k)]
    test_mask = np.stack([training & np.isin(subjects, group) for group in groups])
    folds = Folds(tuple("+".join(group) for group in groups), training & ~test_mask, test_mask)
    for f in range(folds.num_folds):
        if np.any((folds.train_mask[f] | folds.test_mask[f]) & outer.test_mask[fold]):
            raise AssertionError(f"inner fold {f} of fold {fold} touches its outer test subject")
        shared = set(subjects[folds.train_mask[f]]) & set(subjects[folds.test_mask[f]])
        if shared:
            raise AssertionError(f"inner fold {f} of fold {fold} has {shared} on both sides")
    return folds
