"""The shared 68-point scheme: the mirror is an involution that swaps the sides."""

import numpy as np

from mer_jax import landmarks


def test_mirror_is_an_involution_over_all_points():
    assert sorted(landmarks.MIRROR.tolist()) == list(range(landmarks.NUM_LANDMARKS))
    np.testing.assert_array_equal(landmarks.MIRROR[landmarks.MIRROR], np.arange(68))


def test_mirror_swaps_the_sides_and_keeps_the_midline():
    for right, left in (
        (landmarks.RIGHT_BROW, landmarks.LEFT_BROW),
        (landmarks.RIGHT_EYE, landmarks.LEFT_EYE),
    ):
        assert set(landmarks.MIRROR[list(right)].tolist()) == set(left)
    # The nose bridge (27-30) and the chin (8) lie on the face's midline.
    assert [int(landmarks.MIRROR[i]) for i in (8, 27, 28, 29, 30)] == [8, 27, 28, 29, 30]
    for region in (landmarks.JAW, landmarks.NOSE, landmarks.MOUTH):
        assert set(landmarks.MIRROR[list(region)].tolist()) == set(region)
