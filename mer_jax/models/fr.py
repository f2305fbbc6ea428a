"""FR: Feature Refinement (Zhou et al., Pattern Recognition 2022, arXiv 2101.04838).

Published design: an inception module on optical flow yields expression-shared
features; an expression proposal module with attention factors and a proposal loss
refines them into expression-specific features; a classification branch predicts the
expression from a fusion of the expression-specific features. Published composite
result (MEGC2019, LOSO, 442 samples): UF1 .7838, UAR .7832.

Only that outline is taken as published fact; the layer-level design here is
**[our reading]**:

- Input: onset -> apex flow u and v (optionally the optical strain, `use_strain`) at
  28 x 28, each channel min-max normalised per sample.
- Shared features F: one stream per input channel (u stream, v stream, strain stream),
  each two inception blocks (parallel 1x1, 3x3, 5x5 convs and a 3x3 max-pool -> 1x1
  branch, concatenated, BatchNorm, ReLU), each block followed by a 2x2 max-pool (28 -> 14 -> 7);
  the streams are concatenated along channels.
- Expression proposal module: for each class c an attention map a_c = sigmoid(conv(F))
  (one conv with C output channels), an expression-specific feature f_c = GAP(a_c * F)
  and a binary proposal classifier p_c = sigmoid(w_c . f_c + b_c) with its own weights
  per class. Proposal loss L_prop = sum_c BCE(p_c, [y == c]), mean over the batch.
- Classification branch: concatenated f_1..f_C -> (optional hidden layer, ReLU,
  dropout) -> dense -> softmax. Loss L = CE + weight_prop * L_prop.
  `readout="flatten"` (**[ours]**, a trial of docs/methods.md): the classifier reads each
  a_c * F flattened instead of its global average, so where on the face the attended
  motion lies reaches it; the proposal classifiers still read f_c.

The defaults keep it to about 21.8k parameters for 3 classes so that CPU training of
all LOSO folds and seeds stays fast.
"""

from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.errors import UserError
from mer_jax.models.base import MERModel
from mer_jax.models.layers import (
    batch_norm,
    check_motion_norm,
    conv,
    cross_entropy,
    max_pool,
    motion_input,
)

# What the classification branch reads of each class (`FR(readout=...)`).
READOUTS: tuple[str, ...] = ("mean", "flatten")


class InceptionBlock(nnx.Module):
    """Parallel 1x1, 3x3, 5x5 convs and 3x3 max-pool -> 1x1, concatenated, BatchNorm, ReLU.

    **[our reading]**: no 1x1 reductions before the 3x3 / 5x5 convs (unlike GoogLeNet):
    with one input channel in the first block and a handful in the second they would
    save nothing. BatchNorm on the concatenation: the expression-specific features are
    global averages, and without re-centring they are dominated by an offset common to
    all samples (min-max maps are non-negative), which left the classifier almost
    untrainable in our checks; the convs drop their biases since BatchNorm's shift
    replaces them. Output channels: 4 * `branch_features`.
    """

    def __init__(
        self, in_features: int, branch_features: int, *, dtype: DTypeLike, rngs: nnx.Rngs
    ) -> None:
        """Builds the four branches, each with `branch_features` output channels."""

        def branch_conv(kernel_size: int) -> nnx.Conv:
            return conv(
                in_features,
                branch_features,
                (kernel_size, kernel_size),
                padding="SAME",
                use_bias=False,
                dtype=dtype,
                rngs=rngs,
            )

        self.conv1 = branch_conv(1)
        self.conv3 = branch_conv(3)
        self.conv5 = branch_conv(5)
        self.pool_projection = branch_conv(1)
        self.norm = batch_norm(4 * branch_features, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """(batch, H, W, in_features) -> (batch, H, W, 4 * branch_features).

        `train` normalises with the batch statistics and updates the running ones.
        """
        pooled = max_pool(x, 3, stride=1, padding="SAME")
        branches = [self.conv1(x), self.conv3(x), self.conv5(x), self.pool_projection(pooled)]
        features = jnp.concatenate(branches, axis=-1)
        return nnx.relu(self.norm(features, use_running_average=not train))


class MotionStream(nnx.Module):
    """Expression-shared features of one motion component: inception blocks + 2x2 max-pools."""

    def __init__(self, block_features: Sequence[int], *, dtype: DTypeLike, rngs: nnx.Rngs) -> None:
        """Builds one inception block per entry of `block_features` (per-branch widths)."""
        in_features = [1] + [4 * width for width in block_features[:-1]]
        self.blocks = nnx.List(
            [
                InceptionBlock(n_in, width, dtype=dtype, rngs=rngs)
                for n_in, width in zip(in_features, block_features, strict=True)
            ]
        )

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """(batch, H, W, 1) -> (batch, H / 2^blocks, W / 2^blocks, 4 * block_features[-1])."""
        for block in self.blocks:
            x = max_pool(block(x, train=train), 2)
        return x


class FR(MERModel):
    """Feature Refinement; see the module docstring for the architecture."""

    # The engine reads `fields` from the class, so it lists strain for `use_strain`
    # even though the default configuration leaves it unread.
    fields: ClassVar[tuple[str, ...]] = ("flow", "strain")

    def __init__(
        self,
        num_classes: int,
        *,
        input_size: int = 28,
        use_strain: bool = False,
        block_features: Sequence[int] = (8, 8),
        attention_kernel_size: int = 3,
        hidden_features: int | None = None,
        dropout: float = 0.0,
        weight_prop: float = 1.0,
        hflip: bool = False,
        label_smoothing: float = 0.0,
        motion_norm: str = "minmax",
        readout: str = "mean",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the network.

        Args:
            num_classes: number of expression classes C (one attention map and one
                proposal classifier each).
            input_size: side of the square input grid; built datasets at another size
                are resized to it in `prepare`.
            use_strain: add an optical-strain stream next to the u and v streams.
            block_features: per-branch output channels of each inception block of a
                stream (a block outputs 4x that).
            attention_kernel_size: kernel side of the attention conv on F.
            hidden_features: width of an optional hidden layer in the classification
                branch (None: the fused features go straight to the classifier).
            dropout: dropout rate on the classifier input (after the hidden layer if any).
            weight_prop: weight of the proposal loss; 0 is the no-proposal-loss ablation.
            hflip: random horizontal-flip augmentation in training.
            label_smoothing: label smoothing of the classification cross-entropy.
            motion_norm: "minmax" (each map of each sample to [0, 1], as STSTNet's
                input) or "scale" (**[ours]**, `layers.scale_normalize`).
            readout: what the classification branch reads of each class: "mean" (f_c, the
                global average of a_c * F) or "flatten" (**[ours]**: a_c * F flattened).
            dtype: compute dtype; parameters stay float32, logits are float32.
            rngs: initialisation randomness.
        """
        self.num_classes = num_classes
        self.input_size = input_size
        self.use_strain = use_strain
        self.weight_prop = weight_prop
        self.hflip = hflip
        self.label_smoothing = label_smoothing
        self.motion_norm = check_motion_norm(motion_norm)
        if readout not in READOUTS:
            raise UserError(f"model.readout={readout!r}; use one of {READOUTS}.")
        self.readout = readout
        self.dtype = dtype
        num_streams = 3 if use_strain else 2
        self.streams = nnx.List(
            [MotionStream(block_features, dtype=dtype, rngs=rngs) for _ in range(num_streams)]
        )
        shared_features = num_streams * 4 * block_features[-1]
        self.attention = conv(
            shared_features,
            num_classes,
            (attention_kernel_size, attention_kernel_size),
            padding="SAME",
            dtype=dtype,
            rngs=rngs,
        )
        # Column c is w_c of the binary proposal classifier of class c; stored (K, C) so
        # the initialiser's fan-in is the feature width K.
        self.proposal_kernel = nnx.Param(
            nnx.initializers.lecun_normal()(rngs.params(), (shared_features, num_classes))
        )
        self.proposal_bias = nnx.Param(jnp.zeros((num_classes,)))
        grid = input_size // 4  # two 2x2 max-pools
        fused_features = (
            num_classes * shared_features * (grid * grid if readout == "flatten" else 1)
        )
        if hidden_features is None:
            self.hidden = None
            classifier_in = fused_features
        else:
            self.hidden = nnx.Linear(fused_features, hidden_features, dtype=dtype, rngs=rngs)
            classifier_in = hidden_features
        self.dropout = nnx.Dropout(dropout)
        self.classifier = nnx.Linear(classifier_in, num_classes, dtype=dtype, rngs=rngs)

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """Returns {"motion": (batch, size, size, 2 or 3)} [u, v(, strain)], per sample scaled."""
        motion = motion_input(
            batch,
            key,
            size=self.input_size,
            use_strain=self.use_strain,
            hflip=self.hflip and train,
            motion_norm=self.motion_norm,
        )
        return {"motion": motion}

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Runs FR.

        Args:
            inputs: {"motion": (batch, size, size, channels)} from `prepare`.
            train: enables dropout and batch-statistics BatchNorm (updating its running
                statistics, which the caller reads back with `nnx.state`).
            key: dropout key; needed when `train` and the dropout rate is non-zero.

        Returns:
            "logits" (batch, C) float32 class logits, "proposal_logits" (batch, C) float32
            logits of the per-class binary proposals, "attention" (batch, h, w, C) the
            attention factors a_c on the shared feature grid.
        """
        motion = inputs["motion"]
        shared = jnp.concatenate(
            [stream(motion[..., i : i + 1], train=train) for i, stream in enumerate(self.streams)],
            axis=-1,
        )
        attention = nnx.sigmoid(self.attention(shared))
        # a_c * F for all classes at once: (batch, C, h, w, K); f_c its global average.
        attended = jnp.einsum("bhwc,bhwk->bchwk", attention, shared)
        specific = attended.mean(axis=(2, 3))
        kernel = self.proposal_kernel[...].astype(self.dtype)
        proposal_logits = jnp.einsum("bck,kc->bc", specific, kernel) + self.proposal_bias[...]
        read = attended if self.readout == "flatten" else specific
        fused = read.reshape(read.shape[0], -1)
        if self.hidden is not None:
            fused = nnx.relu(self.hidden(fused))
        fused = self.dropout(fused, deterministic=not train, rngs=key)
        logits = self.classifier(fused)
        return {
            "logits": logits.astype(jnp.float32),
            "proposal_logits": proposal_logits.astype(jnp.float32),
            "attention": attention,
        }

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """CE + weight_prop * proposal loss; terms {"ce", "proposal"} (proposal unweighted)."""
        ce = cross_entropy(outputs["logits"], labels, label_smoothing=self.label_smoothing)
        proposal_targets = jax.nn.one_hot(labels, self.num_classes, dtype=jnp.float32)
        proposal = (
            optax.sigmoid_binary_cross_entropy(outputs["proposal_logits"], proposal_targets)
            .sum(axis=-1)
            .mean()
        )
        return ce + self.weight_prop * proposal, {"ce": ce, "proposal": proposal}
