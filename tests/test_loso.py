"""Leave-one-group-out folds and the engine's chunk plan: pure numpy, no training."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mer_jax.data import loso
from mer_jax.errors import UserError
from mer_jax.train.stacking import draw_batch, plan_chunks
from mer_jax.workdir import Chunk, Replica

# Samples in no particular order: 3 subjects of casme2, 2 of samm, one bare name ("sub01")
# shared by both datasets.
SUBJECTS = np.array(
    [
        "casme2/sub02",
        "samm/sub01",
        "casme2/sub01",
        "casme2/sub02",
        "samm/006",
        "casme2/sub01",
        "casme2/sub03",
        "samm/sub01",
        "casme2/sub01",
    ]
)
DATASETS = np.array([subject.split("/")[0] for subject in SUBJECTS])


def test_loso_has_one_fold_per_subject():
    folds = loso.leave_one_group_out(SUBJECTS)
    assert folds.num_folds == 5
    assert folds.test_groups == tuple(sorted(set(SUBJECTS)))
    for f, subject in enumerate(folds.test_groups):
        np.testing.assert_array_equal(folds.test_mask[f], SUBJECTS == subject)
        # Training on everything else: a subject is only ever left out by its own fold.
        np.testing.assert_array_equal(folds.train_mask[f], SUBJECTS != subject)


def test_loso_never_puts_a_subject_on_both_sides():
    folds = loso.make_folds("loso", subjects=SUBJECTS, datasets=DATASETS)
    loso.assert_leak_free(folds, SUBJECTS)
    for f in range(folds.num_folds):
        train = set(SUBJECTS[folds.train_mask[f]])
        test = set(SUBJECTS[folds.test_mask[f]])
        assert test == {folds.test_groups[f]}
        assert not train & test


def test_every_sample_is_tested_exactly_once():
    folds = loso.make_folds("loso", subjects=SUBJECTS, datasets=DATASETS)
    np.testing.assert_array_equal(folds.test_mask.sum(axis=0), np.ones(len(SUBJECTS)))
    assert not (folds.train_mask & folds.test_mask).any()


def test_same_bare_name_in_two_datasets_is_two_folds():
    folds = loso.make_folds("loso", subjects=SUBJECTS, datasets=DATASETS)
    assert "casme2/sub01" in folds.test_groups and "samm/sub01" in folds.test_groups
    casme2 = folds.test_mask[folds.test_groups.index("casme2/sub01")]
    samm = folds.test_mask[folds.test_groups.index("samm/sub01")]
    assert set(SUBJECTS[casme2]) == {"casme2/sub01"}
    assert set(SUBJECTS[samm]) == {"samm/sub01"}
    # samm/sub01 trains the fold that tests casme2/sub01: they are different people.
    assert folds.train_mask[folds.test_groups.index("casme2/sub01")][SUBJECTS == "samm/sub01"].all()


def test_lodo_holds_out_one_dataset_per_fold():
    folds = loso.make_folds("lodo", subjects=SUBJECTS, datasets=DATASETS)
    assert folds.test_groups == ("casme2", "samm")
    np.testing.assert_array_equal(folds.test_mask[0], DATASETS == "casme2")
    np.testing.assert_array_equal(folds.train_mask[0], DATASETS == "samm")
    # Leaving a dataset out leaves each of its subjects out too.
    loso.assert_leak_free(folds, SUBJECTS)


def hand_made(train_mask, test_mask, groups=("a", "b")):
    return loso.Folds(tuple(groups), np.array(train_mask, bool), np.array(test_mask, bool))


SUBJECTS_AB = np.array(["a", "a", "b", "b"])


def test_assert_leak_free_accepts_a_correct_split():
    loso.assert_leak_free(
        hand_made([[0, 0, 1, 1], [1, 1, 0, 0]], [[1, 1, 0, 0], [0, 0, 1, 1]]), SUBJECTS_AB
    )


@pytest.mark.parametrize(
    ("train_mask", "test_mask", "message"),
    [
        # Fold 0 tests a's first clip and trains on a's second: same person on both sides.
        ([[0, 1, 1, 1], [1, 1, 0, 0]], [[1, 0, 0, 0], [0, 1, 1, 1]], "both sides"),
        # Fold 1 trains on the very clip it tests.
        ([[0, 0, 1, 1], [1, 1, 1, 0]], [[1, 1, 0, 0], [0, 0, 1, 1]], "both sides|trains on"),
        # Sample 3 tested by both folds.
        ([[0, 0, 0, 0], [1, 1, 0, 0]], [[1, 1, 0, 1], [0, 0, 1, 1]], "both sides|exactly one"),
        # Sample 3 never tested.
        ([[0, 0, 1, 1], [1, 1, 0, 0]], [[1, 1, 0, 0], [0, 0, 1, 0]], "exactly one"),
    ],
)
def test_assert_leak_free_raises_on_a_leaky_split(train_mask, test_mask, message):
    with pytest.raises(AssertionError, match=message):
        loso.assert_leak_free(hand_made(train_mask, test_mask), SUBJECTS_AB)


@pytest.mark.parametrize(
    ("subjects", "datasets", "split"),
    [
        (["casme2/sub01"] * 3, ["casme2"] * 3, "loso"),
        (["casme2/sub01", "casme2/sub02"], ["casme2", "casme2"], "lodo"),
    ],
)
def test_fewer_than_two_groups_is_a_user_error(subjects, datasets, split):
    with pytest.raises(UserError, match="at least 2 groups"):
        loso.make_folds(split, subjects=np.array(subjects), datasets=np.array(datasets))


def test_unknown_split_is_a_user_error():
    with pytest.raises(UserError, match="Unknown data.split 'loto'"):
        loso.make_folds("loto", subjects=SUBJECTS, datasets=DATASETS)


def replicas(n, seeds=(0,)):
    return [Replica(fold, seed) for seed in seeds for fold in range(n)]


def test_plan_chunks_sizes_and_padding():
    planned = replicas(4, seeds=(0, 1))  # 8 replicas
    chunks = plan_chunks(planned, replicas_per_chunk=3, fold_devices=8)
    assert [len(c.replicas) for c in chunks] == [3, 3, 2]
    # Each chunk is padded to a multiple of the devices on the fold axis.
    assert [c.padded_size for c in chunks] == [8, 8, 8]
    assert [c.name for c in chunks] == ["chunk_000", "chunk_001", "chunk_002"]
    assert [c.index for c in chunks] == [0, 1, 2]
    # Every replica trained exactly once, in order.
    assert [r for c in chunks for r in c.replicas] == planned


def test_plan_chunks_pads_to_a_multiple_of_the_fold_devices():
    (chunk,) = plan_chunks(replicas(10), replicas_per_chunk=100, fold_devices=4)
    assert len(chunk.replicas) == 10 and chunk.padded_size == 12
    (chunk,) = plan_chunks(replicas(8), replicas_per_chunk=8, fold_devices=4)
    assert chunk.padded_size == 8 and chunk.rows == replicas(8)
    chunks = plan_chunks(replicas(5), replicas_per_chunk=2, fold_devices=1)
    assert [(len(c.replicas), c.padded_size) for c in chunks] == [(2, 2), (2, 2), (1, 1)]


def test_padded_rows_repeat_the_last_replica():
    chunk = Chunk(0, (Replica(0, 0), Replica(1, 0), Replica(2, 0)), padded_size=8)
    assert chunk.rows == [Replica(0, 0), Replica(1, 0)] + [Replica(2, 0)] * 6
    (last,) = plan_chunks(replicas(3), replicas_per_chunk=4, fold_devices=4)
    assert last.rows == replicas(3) + [Replica(2, 0)]


def test_balanced_sampling_draws_each_class_alike_and_only_training_clips():
    # 40 clips of class 0 and 4 of class 1 are training; the padding after n_train and the
    # test clip (class 2) must never be drawn.
    labels = jnp.asarray([0] * 40 + [1] * 4 + [2])
    train_idx = jnp.asarray(list(range(44)) + [0] * 6, jnp.int32)
    key = jax.random.key(0)

    def drawn(sampling: str) -> np.ndarray:
        idx = draw_batch(
            key, labels, train_idx, 44, batch_size=4000, num_classes=3, sampling=sampling
        )
        return np.asarray(labels[idx])

    balanced, uniform = drawn("balanced"), drawn("uniform")
    assert set(balanced) == {0, 1} and set(uniform) <= {0, 1}
    assert abs((balanced == 1).mean() - 0.5) < 0.05
    assert abs((uniform == 1).mean() - 4 / 44) < 0.03
