"""STSTNet: Shallow Triple Stream Three-dimensional CNN (Liong et al., FG 2019).

The project's baseline. Input: the onset -> apex optical flow u, v and the optical strain
magnitude, 3 x 28 x 28. Three parallel shallow branches (conv 3x3 with 3, 5 and 8
filters, ReLU, max-pool 3x3 stride 3 'same', average-pool 2x2 stride 2) are
concatenated into 16 maps of 5 x 5, flattened and classified by one dense layer:
1,651 parameters for 3 classes. The paper trains with Adam, lr 5e-5, batch 256,
800 epochs, without augmentation; published composite result (MEGC2019, LOSO, 442
samples, arXiv 1902.03634): UF1 .7353, UAR .7605.
"""

from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.models.base import MERModel
from mer_jax.models.layers import conv, cross_entropy, max_pool, motion_input

# The three inputs of the paper: flow u, flow v, optical strain.
_IN_CHANNELS = 3
_MAX_POOL = 3
_AVG_POOL = 2


class STSTNet(MERModel):
    """STSTNet on [u, v, strain] maps; see the module docstring for the architecture."""

    fields: ClassVar[tuple[str, ...]] = ("flow", "strain")

    def __init__(
        self,
        num_classes: int,
        *,
        input_size: int = 28,
        branch_features: Sequence[int] = (3, 5, 8),
        hflip: bool = False,
        label_smoothing: float = 0.0,
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the network.

        Args:
            num_classes: number of expression classes.
            input_size: side of the square input grid; built datasets at another
                size are resized to it in `prepare`.
            branch_features: output channels of the three streams (paper: 3, 5, 8).
            hflip: random horizontal-flip augmentation in training (not in the paper).
            label_smoothing: cross-entropy label smoothing (paper: none).
            dtype: compute dtype; parameters stay float32, logits are float32.
            rngs: initialisation randomness.
        """
        self.num_classes = num_classes
        self.input_size = input_size
        self.hflip = hflip
        self.label_smoothing = label_smoothing
        # The three streams are conv -> ReLU -> the same two pools, all channel-wise
        # after the conv, so one conv with 3 + 5 + 8 filters is exactly the three
        # streams concatenated (same parameters, same per-filter fan-in at init) in
        # one op instead of three.
        features = sum(branch_features)
        self.streams = conv(_IN_CHANNELS, features, (3, 3), padding="SAME", dtype=dtype, rngs=rngs)
        # 'same' max-pooling keeps ceil(size / 3); the 'valid' average pool halves that.
        pooled = -(-input_size // _MAX_POOL) // _AVG_POOL
        self.classifier = nnx.Linear(
            features * pooled * pooled, num_classes, dtype=dtype, rngs=rngs
        )

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """Returns {"motion": (batch, size, size, 3)} per-channel min-max [u, v, strain]."""
        motion = motion_input(
            batch, key, size=self.input_size, use_strain=True, hflip=self.hflip and train
        )
        return {"motion": motion}

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Returns {"logits": (batch, num_classes) float32}; no dropout, so `key` is unused."""
        del train, key  # No train-dependent layers (no BatchNorm, no dropout).
        x = nnx.relu(self.streams(inputs["motion"]))
        x = max_pool(x, _MAX_POOL, padding="SAME")
        x = nnx.avg_pool(x, (_AVG_POOL, _AVG_POOL), strides=(_AVG_POOL, _AVG_POOL))
        logits = self.classifier(x.reshape(x.shape[0], -1))
        return {"logits": logits.astype(jnp.float32)}

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy; terms {"ce"}."""
        ce = cross_entropy(outputs["logits"], labels, label_smoothing=self.label_smoothing)
        return ce, {"ce": ce}
