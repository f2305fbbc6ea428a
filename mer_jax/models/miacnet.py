"""MIACNet: the two-branch micro-action network of MA2MI (Li, Niu, Zhao, arXiv 2405.16451).

Published design: MIACNet decouples facial *position* features from facial *action*
features with two branches; the network is pre-trained with MA2MI (`ma2mi.py`), which
reconstructs near-future frames of macro-expression videos so that it learns to
represent subtle facial movement. Evaluated on CASME II, SAMM and MMEW. Only that
outline is published (the abstract); everything below is **[our reading]**, with the
branch shapes after MMNet (IJCAI 2022, same first author, the closest public code):

- Input (`preprocess_pair`, shared with the pre-training so fine-tuning sees what
  pre-training saw): the onset and apex frames, uint8, resized to `input_size`
  (area-like: block means, then antialiased bilinear), scaled to [0, 1] (or to
  luminance with `grayscale`). The
  *motion image* is apex - onset divided by its own root-mean-square (per sample, over
  pixels and channels): a micro-expression changes a face by a few grey levels, so an
  unscaled difference would leave the action branch a near-zero input, while the same
  scaling of macro-expression differences in pre-training makes both stages see
  unit-scale motion. The *face* is the onset in [0, 1].
- Action branch (`ActionBranch`): residual blocks (conv 3x3 - GroupNorm - ReLU -
  conv 3x3 - GroupNorm, 1x1 projection shortcut when the shape changes); the first
  log2(input_size / grid) blocks halve the resolution, so the last map is grid x grid;
  a 1x1 conv projects it to `embed_features`. Spatial *continuous attention*, as in MMNet's
  CA block: each block computes a map sigmoid(conv3x3([channel-mean, channel-max])) of
  its residual features, multiplies it by the previous block's map (average-pooled to
  this block's grid), and scales its residual features by the product. GroupNorm rather
  than MMNet's BatchNorm: no running statistics, so a pre-trained branch transfers as
  parameters alone and behaves the same in training and evaluation of tiny LOSO folds.
- Position branch (`PositionBranch`): a small ViT on the onset area-downsampled to
  grid x grid, patch 1 (a linear embedding of each pixel), learned position embeddings,
  `vit_depth` pre-LayerNorm blocks (multi-head self-attention with `vit_heads` heads, an
  MLP of `vit_mlp_ratio` x width with GELU), a final LayerNorm -> (grid, grid, embed_features).
- Head: the two maps are added at the last feature map, then a per-location dense layer
  with ReLU (without it a linear head on the sum would reduce the position features to a
  per-sample bias of the logits: the nonlinearity is what lets position gate action),
  then global average pooling (`head="pool"`) or flattening (`head="flatten"`: each
  location keeps its own classifier weights, so *where* on the face the motion is counts
  directly; docs/methods.md allows either), dropout, a dense classifier. Loss: cross-entropy.
  (RESULTS.md compares the two heads: the pooled-head row of the results table.)
  `position_input="none"` (**[ours]**, a trial of docs/methods.md): the position branch
  sees a blank face, so its features are one learned map of locations shared by every
  clip, with no onset face (and no identity of the subject) in it.

Sizes: the defaults are CPU-sized for the 2-core LOSO runs: grey input 28, grid 7, action
blocks of 16 and 32 channels, width 32. The grid is the cost: the ViT attends over grid^2
tokens. A full (GPU) size, as a config sets it: RGB input 112, grid 14, action_features
(32, 64, 128), embed_features 128 (MMNet: 224 inputs, ResNet-18 widths, 512).
"""

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.models.base import MERModel
from mer_jax.models.layers import conv, cross_entropy

# The sub-modules MIACNet shares with MA2MI, by attribute name.
SHARED_BRANCHES: tuple[str, ...] = ("action", "position")

# How the fused map reaches the classifier (`MIACNet(head=...)`).
HEADS: tuple[str, ...] = ("pool", "flatten")
# What the position branch sees (`MIACNet(position_input=...)`).
POSITION_INPUTS: tuple[str, ...] = ("onset", "none")
# Rec. 601 luma weights for `grayscale`.
_LUMA = (0.299, 0.587, 0.114)
# Added to the motion image's root-mean-square before dividing, in [0, 1] intensity units
# (a quarter of one 8-bit grey level): identical frames give an all-zero motion image.
_MOTION_EPS = 1e-3
# Kernel of the spatial-attention conv on [channel-mean, channel-max] (CBAM uses 7; 3
# keeps the conv on the CPU-fast patch path and the grid is only 14-28 wide).
_ATTENTION_KERNEL = 3
# GroupNorm groups (fewer when a block has fewer channels).
_NORM_GROUPS = 4


@functools.lru_cache(maxsize=32)
def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_in, size_out) matrix of `jax.image.resize(..., method="linear")` along one axis.

    That resize is linear and separable (antialiased when shrinking), so resizing an image
    is M_h^T @ image @ M_w; the matrix is the resize of the identity, computed once.
    """
    with jax.ensure_compile_time_eval():
        identity = jnp.eye(size_in, dtype=jnp.float32)
        return np.asarray(jax.image.resize(identity, (size_in, size_out), method="linear"))


def frames_to_images(frames: jax.Array, *, size: int, grayscale: bool) -> jax.Array:
    """uint8 (or [0, 1] float) (N, P, P, 3) frames -> float32 (N, size, size, C) in [0, 1].

    Area-like resampling in two steps: means over f x f blocks, f = P // size (when it
    divides P; integer sums for uint8 input), then `jax.image.resize`'s antialiased linear
    resize of what is left (e.g. 128 -> 32 -> 28), computed as two matmuls with the colour
    mix (luminance or identity) folded into the column matrix. On a CPU this is several
    times faster than `jax.image.resize` from the full frame, whose cost was comparable to
    the rest of a MIACNet training step.
    """
    batch, height, width, channels = frames.shape
    factor = min(height, width) // size
    integer = jnp.issubdtype(frames.dtype, jnp.integer)
    if factor >= 2 and height % factor == 0 and width % factor == 0:
        height, width = height // factor, width // factor
        blocks = frames.reshape(batch, height, factor, width, factor, channels)
        frames = blocks.astype(jnp.int32 if integer else jnp.float32).sum(axis=(2, 4))
    else:
        factor = 1
    images = frames.astype(jnp.float32) / ((255.0 if integer else 1.0) * factor**2)
    if grayscale:
        mix = np.asarray(_LUMA, np.float32)[:, None]
    else:
        mix = np.eye(channels, dtype=np.float32)
    if (height, width) == (size, size):
        return images @ mix
    rows = _resize_matrix(height, size).T  # (size, height)
    columns = np.kron(_resize_matrix(width, size), mix)  # (width * 3, size * C)
    images = images.reshape(batch * height, width * channels) @ columns
    images = jnp.matmul(rows, images.reshape(batch, height, size * mix.shape[1]))
    return images.reshape(batch, size, size, mix.shape[1])


def preprocess_pair(
    first: jax.Array, second: jax.Array, *, input_size: int, grayscale: bool
) -> dict[str, jax.Array]:
    """The network inputs of a frame pair (onset, apex) or (I_t, I_{t+k}); pure jnp.

    **[our reading]**: both frames are resized to `input_size` (`frames_to_images`)
    and scaled to [0, 1] (luminance if `grayscale`). The motion image second - first is
    divided per sample by its root-mean-square over pixels and channels (+ a small eps),
    so sub-pixel micro motion of a few grey levels and a macro motion both come out at
    unit scale; identical frames give exactly zero.

    Args:
        first: (N, P, P, 3) uint8 frames (onset / I_t).
        second: (N, P, P, 3) uint8 frames (apex / I_{t+k}).
        input_size: side of the network input.
        grayscale: use luminance (1 channel) instead of RGB.

    Returns:
        "motion" (N, size, size, C) float32, the scaled difference; "face" (N, size, size,
        C) float32 in [0, 1], the first frame; "motion_scale" (N,) float32, the divisor
        (the difference's RMS in [0, 1] units + eps), with which the pre-training decoder
        brings its output back to intensity units.
    """
    both = frames_to_images(jnp.concatenate([first, second]), size=input_size, grayscale=grayscale)
    face, later = jnp.split(both, 2)
    difference = later - face
    scale = jnp.sqrt(jnp.mean(difference**2, axis=(1, 2, 3))) + _MOTION_EPS
    return {"motion": difference / scale[:, None, None, None], "face": face, "motion_scale": scale}


def hflip_pair(first: jax.Array, second: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mirrors each pair left-right with probability 1/2, both frames together."""
    flip = jax.random.bernoulli(key, 0.5, (first.shape[0],))[:, None, None, None]
    return (
        jnp.where(flip, jnp.flip(first, axis=2), first),
        jnp.where(flip, jnp.flip(second, axis=2), second),
    )


def area_downsample(images: jax.Array, size: int) -> jax.Array:
    """(N, S, S, C) -> (N, size, size, C): block means when size divides S, else
    antialiased bilinear resizing (which approximates them)."""
    batch, height, width, channels = images.shape
    if height % size == 0 and width % size == 0:
        fh, fw = height // size, width // size
        return images.reshape(batch, size, fh, size, fw, channels).mean(axis=(2, 4))
    return jax.image.resize(images, (batch, size, size, channels), method="linear")


def doublings_between(input_size: int, grid: int) -> int:
    """n such that input_size = grid * 2^n: the stride-2 stages from one to the other."""
    n = round(math.log2(input_size / grid)) if input_size >= grid else -1
    if n < 0 or grid * 2**n != input_size:
        raise ValueError(
            f"input_size ({input_size}) must be grid ({grid}) times a power of 2, so the "
            "action branch's stride-2 blocks end exactly on the grid"
        )
    return n


def _group_norm(features: int, *, dtype: DTypeLike, rngs: nnx.Rngs) -> nnx.GroupNorm:
    groups = math.gcd(features, _NORM_GROUPS)
    return nnx.GroupNorm(features, num_groups=groups, dtype=dtype, rngs=rngs)


class ContinuousAttentionBlock(nnx.Module):
    """A residual block whose residual features are scaled by a continuous spatial attention.

    **[our reading, after MMNet's CA block]**: attention = sigmoid(conv3x3([channel-mean,
    channel-max] of the residual features)) times the previous block's attention map
    (average-pooled to this grid); output = ReLU(residual * attention + shortcut).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        stride: int,
        dtype: DTypeLike,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the two 3x3 convs (the first with `stride`), the shortcut and the attention."""
        self.conv1 = conv(
            in_features,
            out_features,
            (3, 3),
            strides=(stride, stride),
            padding="SAME",
            use_bias=False,
            dtype=dtype,
            rngs=rngs,
        )
        self.norm1 = _group_norm(out_features, dtype=dtype, rngs=rngs)
        self.conv2 = conv(
            out_features,
            out_features,
            (3, 3),
            padding="SAME",
            use_bias=False,
            dtype=dtype,
            rngs=rngs,
        )
        self.norm2 = _group_norm(out_features, dtype=dtype, rngs=rngs)
        if stride == 1 and in_features == out_features:
            self.shortcut = None
        else:
            self.shortcut = conv(
                in_features,
                out_features,
                (1, 1),
                strides=(stride, stride),
                use_bias=False,
                dtype=dtype,
                rngs=rngs,
            )
        k = _ATTENTION_KERNEL
        self.attention = conv(2, 1, (k, k), padding="SAME", dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, previous: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """(N, H, W, in) and the previous (N, H', W', 1) attention -> output, attention."""
        residual = nnx.relu(self.norm1(self.conv1(x)))
        residual = self.norm2(self.conv2(residual))
        # The channel max as a gather at the argmax: the gradient of `max` finds the maxima
        # again by equality and divides by their count, and where XLA computes the forward
        # value and the backward recomputation with different rounding (seen on a batch
        # sharded over 8 XLA:CPU devices, and at backend optimisation level 0) no element
        # matches, 0 / 0 = NaN. The gather's gradient is the same without the comparison.
        channel_max = jnp.take_along_axis(residual, residual.argmax(-1, keepdims=True), -1)
        pooled = jnp.concatenate([residual.mean(axis=-1, keepdims=True), channel_max], -1)
        attention = nnx.sigmoid(self.attention(pooled))
        if previous is not None:
            attention = attention * area_downsample(previous, attention.shape[1])
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return nnx.relu(residual * attention + shortcut), attention


class ActionBranch(nnx.Module):
    """CNN with continuous attention on the motion image: (N, S, S, C) -> (N, G, G, D).

    See the module docstring ([our reading, after MMNet]). The first log2(S / G) blocks
    have stride 2, the others stride 1; a 1x1 conv projects the last block to D.
    """

    def __init__(
        self,
        in_features: int,
        *,
        input_size: int,
        grid: int,
        features: Sequence[int],
        embed_features: int,
        dtype: DTypeLike,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds one `ContinuousAttentionBlock` per entry of `features` (its width)."""
        halvings = doublings_between(input_size, grid)
        if len(features) < halvings:
            raise ValueError(
                f"action_features {tuple(features)} has {len(features)} blocks, but going "
                f"from input_size {input_size} to grid {grid} needs {halvings} stride-2 blocks"
            )
        widths = [in_features, *features]
        self.blocks = nnx.List(
            [
                ContinuousAttentionBlock(
                    n_in, n_out, stride=2 if i < halvings else 1, dtype=dtype, rngs=rngs
                )
                for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True))
            ]
        )
        self.project = conv(features[-1], embed_features, (1, 1), dtype=dtype, rngs=rngs)

    def __call__(self, motion: jax.Array) -> jax.Array:
        """(N, S, S, C) motion image -> (N, G, G, D) action features."""
        x, attention = motion, None
        for block in self.blocks:
            x, attention = block(x, attention)
        return self.project(x)


class TransformerBlock(nnx.Module):
    """Pre-LayerNorm transformer block: multi-head self-attention, then a GELU MLP."""

    def __init__(
        self, dim: int, heads: int, mlp_ratio: int, *, dtype: DTypeLike, rngs: nnx.Rngs
    ) -> None:
        """Builds the block for tokens of width `dim` (divisible by `heads`)."""
        if dim % heads:
            raise ValueError(f"embed_features ({dim}) must be divisible by vit_heads ({heads})")
        self.heads = heads
        self.dtype = dtype
        self.norm1 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.qkv = nnx.Linear(dim, 3 * dim, dtype=dtype, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, dtype=dtype, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.mlp_in = nnx.Linear(dim, mlp_ratio * dim, dtype=dtype, rngs=rngs)
        self.mlp_out = nnx.Linear(mlp_ratio * dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """(N, T, dim) -> (N, T, dim)."""
        batch, length, dim = tokens.shape
        qkv = self.qkv(self.norm1(tokens)).reshape(batch, length, 3, self.heads, -1)
        # XLA's attention (softmax in float32 for low-precision inputs), 1/sqrt(head dim).
        attended = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        attended = attended.reshape(batch, length, dim)
        tokens = tokens + self.proj(attended)
        return tokens + self.mlp_out(nnx.gelu(self.mlp_in(self.norm2(tokens))))


class PositionBranch(nnx.Module):
    """Small ViT on the area-downsampled face: (N, S, S, C) -> (N, G, G, D) position features.

    See the module docstring ([our reading, after MMNet]): patch 1 on the G x G face, so
    each token is one downsampled pixel, plus a learned embedding of its location.
    """

    def __init__(
        self,
        in_features: int,
        *,
        grid: int,
        embed_features: int,
        depth: int,
        heads: int,
        mlp_ratio: int,
        dtype: DTypeLike,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the pixel embedding, the location embeddings and `depth` blocks."""
        self.grid = grid
        self.dtype = dtype
        width = embed_features
        self.embed = nnx.Linear(in_features, width, dtype=dtype, rngs=rngs)
        self.location = nnx.Param(0.02 * jax.random.normal(rngs.params(), (grid * grid, width)))
        self.blocks = nnx.List(
            [
                TransformerBlock(width, heads, mlp_ratio, dtype=dtype, rngs=rngs)
                for _ in range(depth)
            ]
        )
        self.norm = nnx.LayerNorm(width, dtype=dtype, rngs=rngs)

    def __call__(self, face: jax.Array) -> jax.Array:
        """(N, S, S, C) face in [0, 1] -> (N, G, G, D)."""
        small = area_downsample(face, self.grid)
        batch, grid, _, channels = small.shape
        tokens = self.embed(small.reshape(batch, grid * grid, channels).astype(self.dtype))
        tokens = tokens + self.location[...].astype(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens).reshape(batch, grid, grid, -1)


@dataclasses.dataclass(frozen=True)
class BranchSettings:
    """What shapes the two pre-trainable branches (and what they read).

    MIACNet and MA2MI take these as keyword arguments with these defaults, so a
    fine-tuning config and its pre-training agree on them (`models.branch_settings`).

    Attributes:
        input_size: side the frames are resized to; `grid` times a power of 2.
        grayscale: luminance instead of RGB frames.
        action_features: widths of the action branch's blocks; at least
            log2(input_size / grid) of them (those have stride 2).
        embed_features: width D of both branches' output maps.
        grid: side G of both branches' output maps (and of the ViT's token grid).
        vit_depth: transformer blocks of the position branch.
        vit_heads: attention heads (must divide `embed_features`).
        vit_mlp_ratio: hidden width of the ViT MLPs, in multiples of `embed_features`.
    """

    input_size: int = 28
    grayscale: bool = True
    action_features: tuple[int, ...] = (16, 32)
    embed_features: int = 32
    grid: int = 7
    vit_depth: int = 2
    vit_heads: int = 4
    vit_mlp_ratio: int = 2

    def __post_init__(self) -> None:
        # A config read back from JSON holds lists: compare and hash as tuples.
        object.__setattr__(self, "action_features", tuple(self.action_features))

    def build(self, *, dtype: DTypeLike, rngs: nnx.Rngs) -> tuple["ActionBranch", "PositionBranch"]:
        """The action and position branches (MIACNet and MA2MI build them here)."""
        in_features = 1 if self.grayscale else 3
        action = ActionBranch(
            in_features,
            input_size=self.input_size,
            grid=self.grid,
            features=self.action_features,
            embed_features=self.embed_features,
            dtype=dtype,
            rngs=rngs,
        )
        position = PositionBranch(
            in_features,
            grid=self.grid,
            embed_features=self.embed_features,
            depth=self.vit_depth,
            heads=self.vit_heads,
            mlp_ratio=self.vit_mlp_ratio,
            dtype=dtype,
            rngs=rngs,
        )
        return action, position


class MIACNet(MERModel):
    """MIACNet on the onset and apex frames; see the module docstring for what is published."""

    fields: ClassVar[tuple[str, ...]] = ("onset_image", "apex_image")
    BRANCH_SETTINGS: ClassVar[type[BranchSettings]] = BranchSettings

    def __init__(
        self,
        num_classes: int,
        *,
        dropout: float = 0.0,
        hflip: bool = False,
        label_smoothing: float = 0.0,
        head: str = "pool",
        position_input: str = "onset",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
        **branch_settings: Any,
    ) -> None:
        """Builds the network.

        Args:
            num_classes: number of expression classes.
            dropout: dropout rate on the pooled features before the classifier.
            hflip: random horizontal flips (onset and apex together) in training.
            label_smoothing: cross-entropy label smoothing.
            head: how the fused grid x grid map reaches the classifier: "pool" (global
                average) or "flatten" (every location its own weights).
            position_input: what the position branch sees: "onset" (the onset face, as
                published) or "none" (**[ours]**: a blank face, so position is a learned
                map of locations alone, the same for every clip and subject).
            dtype: compute dtype; parameters stay float32, logits are float32.
            rngs: initialisation randomness.
            **branch_settings: the fields of `BranchSettings` (input size, widths, grid,
                ViT), shared with the MA2MI pre-training.
        """
        branches = BranchSettings(**branch_settings)
        self.num_classes = num_classes
        self.input_size = branches.input_size
        self.grayscale = branches.grayscale
        self.hflip = hflip
        self.label_smoothing = label_smoothing
        self.dtype = dtype
        self.action, self.position = branches.build(dtype=dtype, rngs=rngs)
        width = branches.embed_features
        self.fusion = nnx.Linear(width, width, dtype=dtype, rngs=rngs)
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.head = head
        if position_input not in POSITION_INPUTS:
            raise ValueError(
                f"position_input must be one of {POSITION_INPUTS}, got {position_input!r}"
            )
        self.position_input = position_input
        self.dropout = nnx.Dropout(dropout)
        head_in = width * (branches.grid**2 if head == "flatten" else 1)
        self.classifier = nnx.Linear(head_in, num_classes, dtype=dtype, rngs=rngs)

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """`preprocess_pair` of (onset, apex), after a joint random flip when training."""
        onset, apex = batch["onset_image"], batch["apex_image"]
        if self.hflip and train:
            onset, apex = hflip_pair(onset, apex, key)
        return preprocess_pair(onset, apex, input_size=self.input_size, grayscale=self.grayscale)

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Returns {"logits": (batch, num_classes) float32}.

        Args:
            inputs: `prepare`'s "motion" and "face".
            train: enables dropout.
            key: dropout key; needed when `train` and the dropout rate is non-zero.
        """
        action = self.action(inputs["motion"].astype(self.dtype))
        face = inputs["face"].astype(self.dtype)
        if self.position_input == "none":
            face = jnp.zeros_like(face)
        position = self.position(face)
        fused = nnx.relu(self.fusion(action + position))
        if self.head == "flatten":
            fused = fused.reshape(fused.shape[0], -1)
        else:
            fused = fused.mean(axis=(1, 2))
        fused = self.dropout(fused, deterministic=not train, rngs=key)
        return {"logits": self.classifier(fused).astype(jnp.float32)}

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy; terms {"ce"}."""
        ce = cross_entropy(outputs["logits"], labels, label_smoothing=self.label_smoothing)
        return ce, {"ce": ce}
