"""Optical flow, strain and flow resizing (mer_jax.preprocess.flow)."""

import numpy as np
import pytest

from mer_jax.preprocess import compute_flow, optical_strain, resize_flow


def textured_image(size: int, shift: tuple[float, float]) -> np.ndarray:
    """A smooth random texture, sampled exactly at (x - dx, y - dy): a sub-pixel shift."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    x, y = x - shift[0], y - shift[1]
    image = np.zeros((size, size))
    for _ in range(24):
        fx, fy = rng.uniform(-0.25, 0.25, size=2)
        image += np.cos(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    image = (image - image.min()) / (image.max() - image.min())
    return np.round(255 * image).astype(np.uint8)


@pytest.mark.parametrize("method", ["tvl1", "dis", "farneback"])
def test_flow_recovers_subpixel_shift(method):
    shift = (0.7, -0.4)
    onset, apex = textured_image(96, (0.0, 0.0)), textured_image(96, shift)
    flow = compute_flow(onset, apex, method)
    assert flow.shape == (96, 96, 2) and flow.dtype == np.float32
    interior = flow[16:-16, 16:-16]
    assert abs(interior[..., 0].mean() - shift[0]) < 0.1
    assert abs(interior[..., 1].mean() - shift[1]) < 0.1


def test_unknown_flow_method_names_the_choices():
    image = textured_image(32, (0.0, 0.0))
    with pytest.raises(ValueError, match="'raft'.*tvl1, dis, farneback"):
        compute_flow(image, image, "raft")


def test_flow_rejects_colour_input():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="grayscale uint8"):
        compute_flow(image, image, "dis")


def test_strain_is_zero_for_translation_and_positive_for_stretch():
    translation = np.broadcast_to(np.float32([0.6, -0.3]), (40, 40, 2))
    assert np.abs(optical_strain(translation)).max() < 1e-6

    # u = 0.05 * x on the right half: a horizontal stretch with exx = 0.05 there.
    stretch = np.zeros((40, 40, 2), np.float32)
    stretch[:, 20:, 0] = 0.05 * np.arange(20)
    strain = optical_strain(stretch)
    assert strain.shape == (40, 40) and strain.dtype == np.float32
    np.testing.assert_allclose(strain[:, 25:35], 0.05, atol=1e-6)
    assert np.abs(strain[:, :15]).max() < 1e-6


def test_resize_keeps_units_shape_and_dtype():
    flow = np.broadcast_to(np.float32([0.7, -0.4]), (128, 128, 2))
    small = resize_flow(flow, 28)
    assert small.shape == (28, 28, 2) and small.dtype == np.float32
    # Values stay in crop pixels: a uniform 0.7 px motion is still 0.7 after resizing.
    np.testing.assert_allclose(small[..., 0], 0.7, atol=1e-5)
    assert resize_flow(np.ones((128, 128, 1), np.float32), (14, 20)).shape == (14, 20, 1)
    assert resize_flow(np.ones((128, 128), np.float32), 28).shape == (28, 28)
