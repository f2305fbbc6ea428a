"""Pieces shared by the MER methods: motion-map preprocessing, augmentation and losses.

Everything here is per sample and label-free (safe inside `MERModel.prepare`), works on
a leading batch axis, and is jit/vmap friendly: shapes and flags are static Python
values, data-dependent choices (which samples to flip) are `jnp.where`s, never `if`s.

Motion maps are NHWC: channel 0 is the horizontal flow u, channel 1 the vertical flow v
(onset -> apex, in crop-pixel units), further channels (optical strain) are scalar maps.
"""

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.errors import UserError

# Patch width (kernel rows x columns x input channels) up to which a CPU convolution
# runs as patches + matmul (see `conv_general_dilated`): at this bound FR's whole
# training step was fastest, against every conv as patches or none (docs/engine.md,
# "Convolutions on a CPU").
_MAX_PATCH_FEATURES = 32

# Guards the min-max division for a flat map (e.g. a sample with no measured motion),
# which then normalises to all zeros instead of NaN.
_MINMAX_EPS = 1e-6

# BatchNorm as in PyTorch, which the methods' published code uses: its running statistics
# move 0.1 of the way to each batch's (Flax writes that as momentum 0.9; Flax's default,
# 0.99, keeps 99%), with epsilon 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5


def minmax_normalize(maps: jax.Array) -> jax.Array:
    """Min-max normalises each channel of each sample to [0, 1] over its spatial axes.

    Per sample and per channel, like STSTNet's "each optical flow image is normalised":
    u, v and strain have very different ranges, so a joint range would squash strain.
    A constant channel maps to zeros.

    Args:
        maps: (batch, height, width, channels) motion maps.

    Returns:
        float32 maps of the same shape with values in [0, 1].
    """
    maps = maps.astype(jnp.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return (maps - low) / jnp.maximum(high - low, _MINMAX_EPS)


# How `motion_input` scales a sample's motion maps (`motion_norm` of the models that read
# them): the authors' per-channel min-max, or one scale per sample for u and v together.
MOTION_NORMS = ("minmax", "scale")


def scale_normalize(maps: jax.Array) -> jax.Array:
    """**[ours]** Divides u and v of each sample by its largest flow magnitude (one scale for
    both, so the direction of every vector and the u:v ratio survive, as do the signs and
    where nothing moved), and any further channel (strain) by its own largest value.

    Min-max per channel moves each channel's zero to its minimum and stretches u and v
    apart: a linear probe on the min-max maps found 0.11 UF1 less than on the flow itself
    (RESULTS.md, `linear_probe`). A flat sample maps to zeros.

    Args:
        maps: (batch, height, width, channels) with u, v in channels 0 and 1.

    Returns:
        float32 maps of the same shape: u, v in [-1, 1], the rest in [0, 1] when >= 0.
    """
    maps = maps.astype(jnp.float32)
    magnitude = jnp.sqrt(jnp.sum(maps[..., :2] ** 2, axis=-1, keepdims=True))
    flow = maps[..., :2] / jnp.maximum(magnitude.max(axis=(1, 2), keepdims=True), _MINMAX_EPS)
    rest = maps[..., 2:]
    rest = rest / jnp.maximum(jnp.abs(rest).max(axis=(1, 2), keepdims=True), _MINMAX_EPS)
    return jnp.concatenate([flow, rest], axis=-1)


def check_motion_norm(motion_norm: str) -> str:
    """`motion_norm`, or a UserError naming the choices."""
    if motion_norm not in MOTION_NORMS:
        raise UserError(f"model.motion_norm={motion_norm!r}; use one of {MOTION_NORMS}")
    return motion_norm


def resize_maps(maps: jax.Array, size: int) -> jax.Array:
    """Bilinearly resizes (batch, S, S, channels) scalar maps to (batch, size, size, channels).

    A no-op when S already equals `size`, so datasets built at the model's own input
    size pay nothing. Downsampling is antialiased (jax.image.resize's default).
    """
    batch, height, width, channels = maps.shape
    if (height, width) == (size, size):
        return maps
    return jax.image.resize(maps, (batch, size, size, channels), method="linear")


def resize_flow(flow: jax.Array, size: int) -> jax.Array:
    """Resizes (batch, S, S, 2) flow [u, v] to `size` and rescales it to the new pixel units.

    A displacement of d pixels on the S grid is d * size / S pixels on the new grid, so
    the vectors are scaled with the grid (per-sample min-max later cancels a uniform
    scale, but unnormalised consumers of the flow see consistent units).
    """
    height, width = flow.shape[1:3]
    scale = jnp.asarray([size / width, size / height], dtype=flow.dtype)
    return resize_maps(flow, size) * scale


def hflip_flow(maps: jax.Array, flip: jax.Array) -> jax.Array:
    """Mirrors the chosen samples left-right, negating u so the motion stays physical.

    Mirroring a face turns a rightward displacement into a leftward one, so u changes
    sign; v and scalar maps (strain) are only mirrored.

    Args:
        maps: (batch, height, width, channels) motion maps with u in channel 0.
        flip: (batch,) bool, True for the samples to flip.

    Returns:
        Maps of the same shape and dtype.
    """
    sign = jnp.ones(maps.shape[-1], maps.dtype).at[0].set(-1)
    flipped = jnp.flip(maps, axis=2) * sign
    return jnp.where(flip[:, None, None, None], flipped, maps)


def motion_input(
    batch: dict[str, jax.Array],
    key: jax.Array,
    *,
    size: int,
    use_strain: bool,
    hflip: bool,
    motion_norm: str = "minmax",
) -> jax.Array:
    """Builds the network input [u, v(, strain)] from the gathered built-dataset fields.

    Order matters: resize first (so augmentation and normalisation act on the model's
    grid), flip before min-max (negating u changes its min and max), normalisation last
    (`motion_norm`: "minmax" per channel, the authors'; "scale", `scale_normalize`).

    Args:
        batch: holds "flow" (batch, S, S, 2) and, when `use_strain`, "strain"
            (batch, S, S, 1), any float dtype (stored as float16).
        key: PRNG key for the flip draw; unused when `hflip` is False.
        size: the model's input height and width.
        use_strain: append the optical strain magnitude as a third channel.
        hflip: flip each sample with probability 1/2 (pass `hflip and train`).

    Returns:
        float32 (batch, size, size, 2 or 3) maps: each channel in [0, 1] ("minmax"), or
        u, v in [-1, 1] and strain in [0, 1] ("scale").
    """
    maps = resize_flow(batch["flow"].astype(jnp.float32), size)
    if use_strain:
        strain = resize_maps(batch["strain"].astype(jnp.float32), size)
        maps = jnp.concatenate([maps, strain], axis=-1)
    if hflip:
        maps = hflip_flow(maps, jax.random.bernoulli(key, 0.5, (maps.shape[0],)))
    return minmax_normalize(maps) if motion_norm == "minmax" else scale_normalize(maps)


def cross_entropy(
    logits: jax.Array, labels: jax.Array, *, label_smoothing: float = 0.0
) -> jax.Array:
    """Mean softmax cross-entropy of integer labels, with optional label smoothing.

    Computed in float32 whatever the compute dtype of the logits.

    Args:
        logits: (batch, num_classes).
        labels: (batch,) integer class indices.
        label_smoothing: mass moved from the true class onto all classes uniformly.

    Returns:
        Scalar float32 loss.
    """
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets).mean()


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    precision: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """`lax.conv_general_dilated` that is fast to train on a CPU too.

    On XLA's CPU backend a convolution of very few input channels (the 1-3 motion
    channels the methods start from) trains faster as shifted slices of the input
    concatenated into patches and one matmul, whose gradients are matmuls too (the
    same numbers up to float rounding). With more patch features the patch buffer
    dominates and XLA's convolution wins (FR's 14x14, 32 -> 8 channel 5x5 conv trains
    about ten times faster as XLA's conv), so patches are used only up to
    `_MAX_PATCH_FEATURES` (kernel rows x columns x input channels).
    Other backends, and any dilated or grouped case, use XLA's own convolution.
    """
    nhwc = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC"))
    plain = (
        jax.default_backend() == "cpu"
        and math.prod(rhs.shape[:3]) <= _MAX_PATCH_FEATURES
        and lhs.ndim == 4
        and feature_group_count == 1
        and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
        and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc
    )
    if not plain:
        return jax.lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            precision=precision,
            **kwargs,
        )
    kernel_h, kernel_w, in_features, out_features = rhs.shape
    stride_h, stride_w = window_strides
    if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(
            lhs.shape[1:3], (kernel_h, kernel_w), window_strides, padding
        )
    padded = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    out_h = (padded.shape[1] - kernel_h) // stride_h + 1
    out_w = (padded.shape[2] - kernel_w) // stride_w + 1
    # Patch channels ordered (kernel row, kernel column, input channel): rhs's HWIO order.
    patches = jnp.concatenate(
        [
            padded[
                :,
                i : i + stride_h * (out_h - 1) + 1 : stride_h,
                j : j + stride_w * (out_w - 1) + 1 : stride_w,
            ]
            for i in range(kernel_h)
            for j in range(kernel_w)
        ],
        axis=-1,
    )
    kernel = rhs.reshape(kernel_h * kernel_w * in_features, out_features)
    return jnp.matmul(
        patches,
        kernel,
        precision=precision,
        preferred_element_type=kwargs.get("preferred_element_type"),
    )


def batch_norm(features: int, *, dtype: DTypeLike, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm over the last axis with PyTorch's running-statistics update.

    Every model with BatchNorm builds it here. Flax's default momentum (0.99) averages the
    running statistics over about the last 100 steps and starts them at zero mean and unit
    variance (0.99^100 = 37% of the initial values remain after 100 steps): in the short
    schedules of a LOSO fold, whose weights keep moving, evaluation then normalises with
    statistics unlike the ones training used. PyTorch's update by 0.1 (Flax momentum 0.9,
    about the last 10 steps) is what the methods' published code trains with.
    """
    return nnx.BatchNorm(
        features, momentum=_BN_MOMENTUM, epsilon=_BN_EPSILON, dtype=dtype, rngs=rngs
    )


def conv(*args: Any, **kwargs: Any) -> nnx.Conv:
    """`nnx.Conv` computed with `conv_general_dilated` above; same arguments, same parameters."""
    return nnx.Conv(*args, conv_general_dilated=conv_general_dilated, **kwargs)


def max_pool(
    x: jax.Array, window: int, *, stride: int | None = None, padding: str | int = "VALID"
) -> jax.Array:
    """`window x window` max-pooling of NHWC maps, with stride `window` (default) or 1.

    Computed from reshapes (non-overlapping windows) or shifted slices (stride 1) and
    maxima, whose gradients are elementwise masks: `nnx.max_pool`'s select-and-scatter
    gradient is several times slower on a CPU. "SAME" pads with -inf, as
    `nnx.max_pool(..., padding="SAME")` does; an integer pads that many -inf rows and
    columns on every side, then drops what does not fill a window, as PyTorch's
    `MaxPool2d(padding=...)` does (the alignment of the windows differs from "SAME").
    """
    stride = window if stride is None else stride
    if stride not in (1, window):
        raise ValueError(f"stride must be 1 or the window ({window}), got {stride}")
    is_int = isinstance(padding, int) and not isinstance(padding, bool)
    if not is_int and padding not in ("SAME", "VALID"):
        raise ValueError(f"padding must be 'SAME', 'VALID' or an integer, got {padding!r}")
    batch, height, width, channels = x.shape
    if padding == "SAME":
        pads = jax.lax.padtype_to_pads((height, width), (window, window), (stride, stride), "SAME")
        x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    elif is_int:
        pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
        x = jnp.pad(x, pads, constant_values=-jnp.inf)
    if stride == 1:
        # Separable: the max over rows, then over columns (2 x window slices instead of
        # window^2), whose gradient XLA:CPU runs an order of magnitude faster.
        rows, cols = x.shape[1] - window + 1, x.shape[2] - window + 1
        x = functools.reduce(jnp.maximum, [x[:, i : i + rows] for i in range(window)])
        return functools.reduce(jnp.maximum, [x[:, :, j : j + cols] for j in range(window)])
    rows, cols = x.shape[1] // window, x.shape[2] // window
    x = x[:, : rows * window, : cols * window]
    return x.reshape(batch, rows, window, cols, window, channels).max(axis=(2, 4))
