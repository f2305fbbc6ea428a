"""TV-L1 optical flow in JAX: OpenCV's DualTVL1, batched over frame pairs, on any device.

The duality-based TV-L1 of Zach, Pock and Bischof (2007) with the refinements of
OpenCV's `cv2.optflow.DualTVL1OpticalFlow` (after Sanchez, Meinhardt-Llopis and
Facciolo), step for step:

* a coarse-to-fine pyramid: levels resized by `scale_step` with bilinear
  interpolation (OpenCV's half-pixel convention), stopping before a side drops below
  16 pixels; each level's flow is bilinearly upsized to the next one and multiplied by
  1 / `scale_step`;
* `warps` warps per level: the second image and its centred gradient are warped by the
  current flow with bicubic interpolation (OpenCV's kernel, a = -0.75; samples outside
  the image read 0, like `cv2.remap`'s default border);
* per warp up to `outer_iterations` x `inner_iterations` primal-dual iterations
  (thresholding step, divergence with OpenCV's border rules, forward differences,
  the dual update), with a 5 x 5 median filter of the flow at the start of every outer
  iteration;
* OpenCV's stopping rule: a warp stops once the squared change of the flow over the
  image drops to `epsilon`^2 x pixels. It runs as a `lax.while_loop`, so the whole
  solve (pyramid, warps, iterations) stays one jitted program; under `vmap` a batch
  iterates until its slowest pair has stopped (the others are held). `epsilon=0`
  gives fixed iteration counts (every pair runs all of them, unless its flow stops
  changing at all).

It differs from OpenCV's in what float arithmetic allows: the warp samples at the
exact coordinates (`cv2.remap` rounds them to 1/32 pixel), and the median filter of
ties and the sums run in another order, so flows agree closely but not bit for bit.
`gamma` (OpenCV's illumination term) is 0 by default there and is not implemented.

Flow convention as `mer_jax.preprocess.flow`: float32 (H, W, 2) [u, v], in pixels, from
`prev` to `nxt`.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

# OpenCV's cubic interpolation kernel parameter (cv::interpolateCubic).
_CUBIC_A = -0.75
# The pyramid stops before a level's side drops below this (OpenCV's rule).
_MIN_LEVEL_SIDE = 16
# Where |grad I1|^2 is below this the data term has no direction (FLT_EPSILON in OpenCV).
_FLOAT_EPSILON = float(np.finfo(np.float32).eps)
# The mesh axis that frame pairs are split over.
PAIRS_AXIS = "pairs"


@dataclass(frozen=True)
class TVL1Parameters:
    """The solver's parameters; the defaults are OpenCV's DualTVL1 defaults.

    Attributes:
        tau: time step of the primal-dual iterations.
        lambda_: weight of the data term (smaller: smoother flow).
        theta: coupling of the two primal variables.
        scales: pyramid levels at most (fewer where a side would drop below 16 px).
        warps: warps per level.
        epsilon: stopping threshold of a warp's iterations (0: run all of them unless
            the flow stops changing at all).
        inner_iterations, outer_iterations: iterations per warp at most, in
            `outer_iterations` groups of `inner_iterations`, each group starting with
            the median filter.
        scale_step: side ratio of consecutive pyramid levels.
        median_filtering: side of the median filter (1: none; OpenCV's float median
            supports 3 and 5).
    """

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    scales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    median_filtering: int = 5

    def __post_init__(self) -> None:
        """Rejects parameters the solver cannot run with."""
        if self.median_filtering not in (1, 3, 5):
            raise ValueError(f"median_filtering must be 1, 3 or 5; got {self.median_filtering}")
        if not 0 < self.scale_step < 1:
            raise ValueError(f"scale_step must be in (0, 1); got {self.scale_step}")
        if min(self.scales, self.warps, self.inner_iterations, self.outer_iterations) < 1:
            raise ValueError("scales, warps and the iteration counts must be at least 1")


def pyramid_sides(height: int, width: int, parameters: TVL1Parameters) -> list[tuple[int, int]]:
    """(height, width) of every pyramid level, finest first (OpenCV's sizes and rule)."""
    sides = [(height, width)]
    for _ in range(1, parameters.scales):
        # cv::resize with a scale factor rounds the new size to the nearest integer.
        level = tuple(int(round(side * parameters.scale_step)) for side in sides[-1])
        if min(level) < _MIN_LEVEL_SIDE:
            break
        sides.append(level)
    return sides


def _linear_resize_matrix(source: int, target: int, scale: float) -> np.ndarray:
    """(target, source) matrix of cv::resize's bilinear interpolation along one axis.

    `scale` is the source length per target pixel, as cv::resize uses it (from the
    scale factor it was given, not from the rounded sizes).
    """
    matrix = np.zeros((target, source), np.float64)
    for index in range(target):
        position = (index + 0.5) * scale - 0.5
        left = int(np.floor(position))
        weight = position - left
        if left < 0:
            left, weight = 0, 0.0
        if left >= source - 1:
            left, weight = source - 1, 0.0
        matrix[index, left] += 1.0 - weight
        if weight:
            matrix[index, left + 1] += weight
    return matrix.astype(np.float32)


def _resize(image: jax.Array, rows: np.ndarray, columns: np.ndarray) -> jax.Array:
    """Separable linear resize: rows (h', h) @ image (h, w) @ columns.T (w, w')."""
    return rows @ image @ columns.T


def _centred_gradient(image: jax.Array) -> tuple[jax.Array, jax.Array]:
    """OpenCV's centredGradient: half central differences, half one-sided at the border."""
    padded = jnp.pad(image, 1, mode="edge")
    dx = 0.5 * (padded[1:-1, 2:] - padded[1:-1, :-2])
    dy = 0.5 * (padded[2:, 1:-1] - padded[:-2, 1:-1])
    return dx, dy


def _forward_gradient(field: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Forward differences, 0 on the last column (dx) and the last row (dy)."""
    dx = jnp.pad(field[:, 1:] - field[:, :-1], ((0, 0), (0, 1)))
    dy = jnp.pad(field[1:, :] - field[:-1, :], ((0, 1), (0, 0)))
    return dx, dy


def _divergence(p_x: jax.Array, p_y: jax.Array) -> jax.Array:
    """Backward differences with the field taken as 0 before the first row and column:
    the negative adjoint of `_forward_gradient`."""
    return (
        p_x - jnp.pad(p_x[:, :-1], ((0, 0), (1, 0))) + p_y - jnp.pad(p_y[:-1, :], ((1, 0), (0, 0)))
    )


def _cubic_weights(fraction: jax.Array) -> jax.Array:
    """The 4 weights of OpenCV's cubic kernel at taps -1, 0, 1, 2 of `fraction` in [0, 1)."""
    a = _CUBIC_A
    t = fraction[..., None] - jnp.arange(-1.0, 3.0, dtype=fraction.dtype)
    t = jnp.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return jnp.where(t <= 1, near, jnp.where(t < 2, far, 0.0))


def _warp_bicubic(images: jax.Array, flow_x: jax.Array, flow_y: jax.Array) -> jax.Array:
    """`images` (C, H, W) sampled at (x + u, y + v), bicubic, zero outside (cv2.remap)."""
    channels, height, width = images.shape
    x = jnp.arange(width, dtype=flow_x.dtype)[None, :] + flow_x
    y = jnp.arange(height, dtype=flow_y.dtype)[:, None] + flow_y
    x_floor, y_floor = jnp.floor(x), jnp.floor(y)
    weights_x = _cubic_weights(x - x_floor)  # (H, W, 4)
    weights_y = _cubic_weights(y - y_floor)
    taps = jnp.arange(-1, 3)
    columns = x_floor.astype(jnp.int32)[..., None] + taps  # (H, W, 4)
    rows = y_floor.astype(jnp.int32)[..., None] + taps
    inside_x = (columns >= 0) & (columns < width)
    inside_y = (rows >= 0) & (rows < height)
    index = (
        jnp.clip(rows, 0, height - 1)[..., :, None] * width
        + jnp.clip(columns, 0, width - 1)[..., None, :]
    )  # (H, W, 4 rows, 4 columns)
    weight = (weights_y * inside_y)[..., :, None] * (weights_x * inside_x)[..., None, :]
    flat = images.reshape(channels, height * width)
    samples = jnp.take(flat, index.reshape(-1), axis=1).reshape((channels,) + index.shape)
    return jnp.sum(samples * weight, axis=(-2, -1))


@functools.cache
def _median_network(count: int) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Batcher's odd-even merge sort network for `count` values padded to a power of 2.

    Returns the padded size and the compare-exchange pairs. Min/max pairs are
    elementwise, so the filter fuses into a few loops (`jnp.sort` along a window axis
    does not, and costs more than the whole solve on a CPU); XLA drops the pairs that
    do not lead to the median.
    """
    size = 1 << (count - 1).bit_length()
    pairs = []
    merge = 1
    while merge < size:
        stride = merge
        while stride >= 1:
            for start in range(stride % merge, size - stride, 2 * stride):
                for offset in range(min(stride, size - start - stride)):
                    low, high = offset + start, offset + start + stride
                    if low // (2 * merge) == high // (2 * merge):
                        pairs.append((low, high))
            stride //= 2
        merge *= 2
    return size, tuple(pairs)


def _median_filter(field: jax.Array, side: int) -> jax.Array:
    """cv2.medianBlur of a float field: side x side median, replicated border."""
    if side == 1:
        return field
    height, width = field.shape
    radius = side // 2
    padded = jnp.pad(field, radius, mode="edge")
    values = [padded[i : i + height, j : j + width] for i in range(side) for j in range(side)]
    count = len(values)
    size, pairs = _median_network(count)
    # Pad with as many -inf below as +inf above (one more +inf for an odd padding), so
    # the median of the real values is the middle element of the sorted padded list.
    below = (size - count) // 2
    low_fill = jnp.full_like(field, -jnp.inf)
    high_fill = jnp.full_like(field, jnp.inf)
    values = [low_fill] * below + values + [high_fill] * (size - count - below)
    for low, high in pairs:
        values[low], values[high] = (
            jnp.minimum(values[low], values[high]),
            jnp.maximum(values[low], values[high]),
        )
    return values[below + count // 2]


def _primal_dual_step(
    flow: tuple[jax.Array, ...],
    duals: tuple[jax.Array, ...],
    warped: tuple[jax.Array, ...],
    parameters: TVL1Parameters,
) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...], jax.Array]:
    """One inner iteration (OpenCV's estimateV, divergence, estimateU, estimateDual).

    Args:
        flow: (u, v), each (h, w).
        duals: the dual variables (p11, p12, p21, p22), each (h, w).
        warped: (I1w_x, I1w_y, |grad I1w|^2, rho_c) of this warp, each (h, w).

    Returns:
        the new flow, the new duals and the squared change of the flow, summed.
    """
    i1x, i1y, grad, rho_c = warped
    lambda_theta = parameters.lambda_ * parameters.theta
    tau_over_theta = parameters.tau / parameters.theta
    # Thresholding step: v minimises the data term linearised at this warp near u.
    rho = rho_c + i1x * flow[0] + i1y * flow[1]
    safe_grad = jnp.where(grad > _FLOAT_EPSILON, grad, 1.0)
    step = jnp.where(
        rho < -lambda_theta * grad,
        lambda_theta,
        jnp.where(
            rho > lambda_theta * grad,
            -lambda_theta,
            jnp.where(grad > _FLOAT_EPSILON, -rho / safe_grad, 0.0),
        ),
    )
    new_flow = (
        flow[0] + step * i1x + parameters.theta * _divergence(duals[0], duals[1]),
        flow[1] + step * i1y + parameters.theta * _divergence(duals[2], duals[3]),
    )
    change = jnp.sum(jnp.square(new_flow[0] - flow[0]) + jnp.square(new_flow[1] - flow[1]))
    new_duals = []
    for component, (p_x, p_y) in zip(new_flow, (duals[:2], duals[2:]), strict=True):
        d_x, d_y = _forward_gradient(component)
        norm = 1.0 + tau_over_theta * jnp.sqrt(d_x * d_x + d_y * d_y)
        new_duals += [(p_x + tau_over_theta * d_x) / norm, (p_y + tau_over_theta * d_y) / norm]
    return new_flow, tuple(new_duals), change


def _solve_level(
    image0: jax.Array,
    image1: jax.Array,
    flow: tuple[jax.Array, jax.Array],
    parameters: TVL1Parameters,
) -> tuple[jax.Array, jax.Array]:
    """OpenCV's procOneScale: `warps` warps of primal-dual iterations on one level.

    Args:
        image0, image1: (h, w) float, this level of the two images.
        flow: (u, v), each (h, w), the initial flow at this level.

    Returns:
        (u, v) at this level.
    """
    height, width = image0.shape
    stop_below = parameters.epsilon**2 * height * width
    image1_and_gradient = jnp.stack([image1, *_centred_gradient(image1)])

    def running(change: jax.Array, count: jax.Array, limit: int) -> jax.Array:
        return (change > stop_below) & (count < limit)

    def warp(_, carry):
        flow, duals = carry
        i1w, i1x, i1y = _warp_bicubic(image1_and_gradient, flow[0], flow[1])
        grad = i1x * i1x + i1y * i1y
        rho_c = i1w - i1x * flow[0] - i1y * flow[1] - image0
        warped = (i1x, i1y, grad, rho_c)

        def inner(state):
            flow, duals, _, count = state
            return (*_primal_dual_step(flow, duals, warped, parameters), count + 1)

        def outer(state):
            flow, duals, change, count = state
            flow = tuple(_median_filter(f, parameters.median_filtering) for f in flow)
            flow, duals, change, _ = jax.lax.while_loop(
                lambda s: running(s[2], s[3], parameters.inner_iterations),
                inner,
                (flow, duals, change, jnp.int32(0)),
            )
            return flow, duals, change, count + 1

        # Each warp starts "not converged", as OpenCV's does.
        start = (flow, duals, jnp.asarray(jnp.inf, image0.dtype), jnp.int32(0))
        flow, duals, _, _ = jax.lax.while_loop(
            lambda s: running(s[2], s[3], parameters.outer_iterations), outer, start
        )
        return flow, duals

    # The duals start at 0 on every level and carry over between its warps.
    duals = (jnp.zeros_like(image0),) * 4
    flow, _ = jax.lax.fori_loop(0, parameters.warps, warp, (flow, duals))
    return flow


def tvl1_flow_pair(
    prev: jax.Array, nxt: jax.Array, parameters: TVL1Parameters = TVL1Parameters()
) -> jax.Array:
    """TV-L1 flow of one pair, pure and jittable (vmap it over pairs).

    Args:
        prev, nxt: (H, W) grey levels on OpenCV's scale (0..255), float; the dtype
            (float32 or bfloat16) is the dtype of the whole solve.
        parameters: the solver's parameters (static).

    Returns:
        (H, W, 2) [u, v] from `prev` to `nxt`, in pixels, in the images' dtype.
    """
    height, width = prev.shape
    sides = pyramid_sides(height, width, parameters)
    dtype = prev.dtype
    levels = [(prev, nxt)]
    for (rows, cols), (next_rows, next_cols) in zip(sides, sides[1:], strict=False):
        resize_rows = _linear_resize_matrix(rows, next_rows, 1 / parameters.scale_step)
        resize_cols = _linear_resize_matrix(cols, next_cols, 1 / parameters.scale_step)
        levels.append(
            tuple(
                _resize(image, resize_rows.astype(dtype), resize_cols.astype(dtype))
                for image in levels[-1]
            )
        )
    flow = (jnp.zeros(sides[-1], dtype),) * 2
    for level in range(len(sides) - 1, -1, -1):
        flow = _solve_level(*levels[level], flow, parameters)
        if level:
            (rows, cols), (finer_rows, finer_cols) = sides[level], sides[level - 1]
            # cv::resize to a given size: the scale comes from the two sizes.
            up_rows = _linear_resize_matrix(rows, finer_rows, rows / finer_rows).astype(dtype)
            up_cols = _linear_resize_matrix(cols, finer_cols, cols / finer_cols).astype(dtype)
            flow = tuple(_resize(f, up_rows, up_cols) / parameters.scale_step for f in flow)
    return jnp.stack(flow, axis=-1)


@functools.cache
def _batch_solver(
    parameters: TVL1Parameters, dtype: str, devices: tuple[jax.Device, ...]
) -> jax.stages.Wrapped:
    """The jitted solve of a batch of uint8 pairs, split over `devices` along the batch.

    Each device iterates its own pairs (`shard_map`): the stopping rule's "has every
    pair stopped?" stays on the device, with no exchange between devices per iteration.
    """

    def solve(prev: jax.Array, nxt: jax.Array) -> jax.Array:
        pair = functools.partial(tvl1_flow_pair, parameters=parameters)
        flow = jax.vmap(pair)(prev.astype(dtype), nxt.astype(dtype))
        return flow.astype(jnp.float32)

    mesh = Mesh(np.asarray(devices), (PAIRS_AXIS,))
    pairs = PartitionSpec(PAIRS_AXIS)
    # No replication checks: the solve's loops start from constants (zero flow, infinite
    # change) that become per-device values, which is what is meant.
    sharded = jax.shard_map(
        solve, mesh=mesh, in_specs=(pairs, pairs), out_specs=pairs, check_vma=False
    )
    return jax.jit(
        sharded, in_shardings=NamedSharding(mesh, pairs), out_shardings=NamedSharding(mesh, pairs)
    )


def tvl1_flow_batch(
    prev: np.ndarray,
    nxt: np.ndarray,
    parameters: TVL1Parameters = TVL1Parameters(),
    *,
    dtype: str = "float32",
    devices: Sequence[jax.Device] | None = None,
) -> np.ndarray:
    """TV-L1 flows of a batch of frame pairs, in one jitted program split over devices.

    Args:
        prev: uint8 (B, H, W) grayscale images, e.g. the aligned onset crops.
        nxt: uint8 (B, H, W), e.g. the aligned apex crops.
        parameters: the solver's parameters (OpenCV's defaults).
        dtype: "float32" or "bfloat16", the dtype of the solve (flows are float32).
        devices: where the batch is split (default: every local device); the batch is
            padded to a multiple of their number, and a batch smaller than that uses
            its first B devices.

    Returns:
        float32 (B, H, W, 2) [u, v], in pixels, from each `prev` to its `nxt`.
    """
    if prev.ndim != 3 or prev.dtype != np.uint8 or prev.shape != nxt.shape or (
        nxt.dtype != np.uint8
    ):
        raise ValueError(
            "tvl1_flow_batch needs two uint8 batches of grayscale images (B, H, W) of the "
            f"same shape; got {prev.dtype}{prev.shape} and {nxt.dtype}{nxt.shape}"
        )
    if min(prev.shape[1:]) < 3:
        raise ValueError(f"images of {prev.shape[1:]} are too small for TV-L1: 3 x 3 at least")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32' or 'bfloat16'; got {dtype!r}")
    count = len(prev)
    if count == 0:
        return np.zeros(prev.shape + (2,), np.float32)
    devices = tuple(devices or jax.local_devices())[:count]
    padding = -count % len(devices)
    if padding:
        # Padding pairs repeat the last one: a real pair converges like the others.
        prev = np.concatenate([prev, np.repeat(prev[-1:], padding, axis=0)])
        nxt = np.concatenate([nxt, np.repeat(nxt[-1:], padding, axis=0)])
    flow = _batch_solver(parameters, dtype, devices)(prev, nxt)
    return np.asarray(flow)[:count]
