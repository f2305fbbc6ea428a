"""TV-L1 in JAX (mer_jax.preprocess.flow_jax): its parts against OpenCV's, the flow
against known motion and against OpenCV's DualTVL1, determinism, the 8-device split and
the export for accelerators."""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from test_flow import textured_image

from mer_jax.preprocess import compute_flow, compute_flows, flow_jax
from mer_jax.preprocess.flow_jax import TVL1Parameters, tvl1_flow_batch

SIZE = 48
SHIFT = (0.7, -0.4)
# Few, short loops: the tests of batching, devices and export need the program's shape,
# not its accuracy, and this one compiles in a fraction of the time.
SMALL = TVL1Parameters(scales=2, warps=1, inner_iterations=4, outer_iterations=2)
# Pixels this far from the border are compared: there the warped image reads zeros
# (as in OpenCV) and neither solver knows the motion.
MARGIN = 6


def interior(field: np.ndarray) -> np.ndarray:
    return field[..., MARGIN:-MARGIN, MARGIN:-MARGIN, :]


def end_point_error(flow: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(interior(flow) - interior(truth), axis=-1).mean())


def shifted_pair(size: int = SIZE, shift: tuple[float, float] = SHIFT) -> np.ndarray:
    """uint8 (2, size, size): a texture and the same texture moved by `shift`."""
    return np.stack([textured_image(size, (0.0, 0.0)), textured_image(size, shift)])


def test_defaults_are_opencv_dualtvl1_defaults():
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    parameters = TVL1Parameters()
    assert parameters.tau == solver.getTau() and parameters.lambda_ == solver.getLambda()
    assert parameters.theta == solver.getTheta() and parameters.epsilon == solver.getEpsilon()
    assert parameters.scales == solver.getScalesNumber()
    assert parameters.warps == solver.getWarpingsNumber()
    assert parameters.inner_iterations == solver.getInnerIterations()
    assert parameters.outer_iterations == solver.getOuterIterations()
    assert parameters.scale_step == solver.getScaleStep()
    assert parameters.median_filtering == solver.getMedianFiltering()
    assert solver.getGamma() == 0 and not solver.getUseInitialFlow()


def test_parts_equal_opencv():
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (23, 30)).astype(np.float32)
    # The pyramid's bilinear resize, at OpenCV's rounded sizes.
    (rows, cols), (small_rows, small_cols) = flow_jax.pyramid_sides(23, 30, TVL1Parameters())[:2]
    assert (small_cols, small_rows) == (24, 18)
    resized = flow_jax._resize(
        image,
        flow_jax._linear_resize_matrix(rows, small_rows, 1 / 0.8),
        flow_jax._linear_resize_matrix(cols, small_cols, 1 / 0.8),
    )
    expected = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(resized, expected, atol=1e-3)
    # The 5 x 5 median of a float field.
    np.testing.assert_array_equal(flow_jax._median_filter(image, 5), cv2.medianBlur(image, 5))
    # The bicubic warp, zero outside; coordinates on OpenCV's 1/32 pixel grid, which
    # cv2.remap rounds to.
    u = np.round(rng.uniform(-3, 3, image.shape) * 32).astype(np.float32) / 32
    v = np.round(rng.uniform(-3, 3, image.shape) * 32).astype(np.float32) / 32
    ys, xs = np.mgrid[0:23, 0:30].astype(np.float32)
    expected = cv2.remap(image, xs + u, ys + v, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)
    warped = flow_jax._warp_bicubic(jnp.asarray(image)[None], jnp.asarray(u), jnp.asarray(v))
    np.testing.assert_allclose(warped[0], expected, atol=0.05)


def test_recovers_a_subpixel_translation_like_opencv():
    onset, apex = shifted_pair()
    (flow,) = tvl1_flow_batch(onset[None], apex[None])
    assert flow.shape == (SIZE, SIZE, 2) and flow.dtype == np.float32
    truth = np.broadcast_to(np.float32(SHIFT), flow.shape)
    opencv = compute_flow(onset, apex, "tvl1")
    # Measured: JAX 0.04, OpenCV 0.05 px.
    assert end_point_error(flow, truth) < 0.08
    assert end_point_error(flow, truth) < 1.1 * end_point_error(opencv, truth) + 0.01
    # The two solvers agree closely where the motion is known.
    assert np.abs(interior(flow) - interior(opencv)).mean() < 0.05


def smooth_warp_pair(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A texture, the texture under a smooth non-uniform motion d, and d at each onset
    pixel (the pixel at p moves to x = p + d(x), solved by fixed-point iteration)."""
    rng = np.random.default_rng(1)
    phases = rng.uniform(0, 2 * np.pi, 4)

    def motion(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        angle = 2 * np.pi / size
        return np.stack(
            [
                0.8 * np.sin(angle * y + phases[0]) + 0.3 * np.cos(angle * x + phases[1]),
                0.6 * np.cos(angle * x + phases[2]) - 0.3 * np.sin(angle * y + phases[3]),
            ],
            axis=-1,
        )

    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    # The apex pixel x shows the texture point x - d(x): sample the texture exactly there.
    image = np.zeros((size, size))
    texture = np.random.default_rng(0)
    apex_x, apex_y = xs - motion(xs, ys)[..., 0], ys - motion(xs, ys)[..., 1]
    onset = np.zeros((size, size))
    for _ in range(24):
        fx, fy = texture.uniform(-0.25, 0.25, size=2)
        phase = texture.uniform(0, 2 * np.pi)
        onset += np.cos(2 * np.pi * (fx * xs + fy * ys) + phase)
        image += np.cos(2 * np.pi * (fx * apex_x + fy * apex_y) + phase)
    low, high = onset.min(), onset.max()
    to_uint8 = lambda values: np.round(255 * np.clip((values - low) / (high - low), 0, 1))  # noqa: E731
    moved = np.stack([xs, ys], axis=-1)
    for _ in range(50):
        moved = np.stack([xs, ys], axis=-1) + motion(moved[..., 0], moved[..., 1])
    truth = moved - np.stack([xs, ys], axis=-1)
    return to_uint8(onset).astype(np.uint8), to_uint8(image).astype(np.uint8), truth


def test_recovers_a_smooth_warp():
    onset, apex, truth = smooth_warp_pair(SIZE)
    (flow,) = tvl1_flow_batch(onset[None], apex[None])
    opencv = compute_flow(onset, apex, "tvl1")
    # Measured: JAX 0.09, OpenCV 0.09 px, for motion up to 1.1 px.
    assert np.linalg.norm(truth, axis=-1).max() > 1.0
    assert end_point_error(flow, truth) < 0.15
    assert end_point_error(flow, truth) < 1.1 * end_point_error(opencv, truth) + 0.01


def test_deterministic_and_split_over_the_8_devices():
    assert len(jax.devices()) == 8
    pairs = [shifted_pair(32, (0.1 * k, 0.5 - 0.1 * k)) for k in range(8)]
    onsets, apexes = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    split = tvl1_flow_batch(onsets, apexes, SMALL)
    np.testing.assert_array_equal(split, tvl1_flow_batch(onsets, apexes, SMALL))
    assert np.abs(split).max() > 0.1
    # Each device solves its own pair: the same bytes as the pair solved alone.
    alone = tvl1_flow_batch(onsets[3:4], apexes[3:4], SMALL, devices=jax.devices()[:1])
    np.testing.assert_array_equal(split[3], alone[0])
    solver = flow_jax._batch_solver(SMALL, "float32", tuple(jax.devices()))
    assert "num_partitions = 8" in solver.lower(onsets, apexes).as_text()
    # A batch that does not fill the devices is padded and cut back.
    uneven = tvl1_flow_batch(onsets[:3], apexes[:3], SMALL, devices=jax.devices()[:2])
    assert uneven.shape == (3, 32, 32, 2)


def test_bfloat16_solve_stays_near_float32():
    onset, apex = shifted_pair(32)
    # One pyramid level is enough for a shift below a pixel, and compiles faster.
    one_level = TVL1Parameters(scales=1)
    flow = tvl1_flow_batch(onset[None], apex[None], one_level, dtype="bfloat16")[0]
    truth = np.broadcast_to(np.float32(SHIFT), flow.shape)
    # bfloat16 holds grey levels to 1 part in 256: the flow is coarser, not lost
    # (measured: 0.03 px, float32 0.02 px).
    assert flow.dtype == np.float32 and end_point_error(flow, truth) < 0.1


def test_compute_flows_batches_tvl1_jax_and_loops_the_others():
    # One pair of the translation test's shape: its compiled solve is reused.
    onsets, apexes = shifted_pair()[:, None]
    np.testing.assert_array_equal(
        compute_flows(onsets, apexes, "tvl1_jax")[0], compute_flow(onsets[0], apexes[0], "tvl1_jax")
    )
    onsets, apexes = np.stack([shifted_pair(32)] * 2, axis=1)
    dis_flows = compute_flows(onsets, apexes, "dis")
    np.testing.assert_array_equal(dis_flows[1], compute_flow(onsets[1], apexes[1], "dis"))
    with pytest.raises(ValueError, match="grayscale uint8"):
        compute_flows(onsets.astype(np.float32), apexes, "tvl1_jax")


def test_exports_for_tpu_and_cuda():
    solver = flow_jax._batch_solver(TVL1Parameters(), "bfloat16", tuple(jax.devices()))
    # Lowered only (nothing compiles): the full solve at OpenCV's defaults.
    pairs = jax.ShapeDtypeStruct((8, 32, 32), jnp.uint8)
    exported = export.export(solver, platforms=("tpu", "cuda"))(pairs, pairs)
    assert exported.platforms == ("tpu", "cuda")
    assert exported.out_avals[0].shape == (8, 32, 32, 2)
