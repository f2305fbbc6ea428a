"""MA2MI: macro-to-micro pre-training of MIACNet's branches (Li, Niu, Zhao, arXiv 2405.16451).

Published design: MA2MI pre-trains on macro-expression videos by reconstructing
(near-)future frames, so that the network learns to represent subtle facial movement;
the pre-trained network is then fine-tuned for micro-expression recognition (MIACNet,
`miacnet.py`). Only that outline is published; everything below is **[our reading]**:

- A training pair is two frames of one macro-expression clip, I_t and I_{t+k} (k small;
  the macro builders choose it). `prepare` turns them into exactly what MIACNet's
  `prepare` makes of (onset, apex) - `miacnet.preprocess_pair`: the motion image
  I_{t+k} - I_t, divided by its own RMS, and the face I_t - plus the low-resolution
  frames the decoder works with: the target I_{t+k} and the base I_t, both at
  `recon_size` R (area-like resampling), in [0, 1].
- The action branch encodes the motion image, the position branch encodes I_t (both the
  very modules MIACNet has, `miacnet.make_branches`, so their parameters transfer by
  attribute name).
- The decoder predicts I_{t+k} as the base I_t plus a decoded residual:
  reconstruction = I_t(R) + motion_scale * D(position, bottleneck(action)), where
  bottleneck is a 1x1 conv to `bottleneck_features` channels, D is 3x3 convs with ReLU on
  [position, code] from the grid up, doubling the resolution up to R (nearest
  upsampling, then a sub-pixel output conv), and
  motion_scale is the RMS that `preprocess_pair` divided the motion image by (so D works
  in unit-scale motion, as the action branch does).

Why the action code must carry the motion: the residual form makes "copy I_t" the
decoder's starting point (a zero residual; the output conv is zero-initialised), and
that is all the position path alone can do - the position branch sees only I_t, at the
grid (G x G, coarser than R), and nothing of I_{t+k}, so it cannot tell which way or
how much the face moves. Every bit of error below the copy baseline (the "copy_mae"
term: I_t against I_{t+k}) has to come through the action code. The code is a
bottleneck - `bottleneck_features` channels at G x G (4 x 7 x 7 = 196 numbers by
default) against R x R x C target values (784) - so the action branch cannot pass the
difference image through pixel by pixel; it has to summarise the motion in a form the
decoder can unfold with the position features (the face layout).

Loss: L1 + `weight_gradient` x L1 of the image gradients (finite differences along rows
and columns), which keeps moving edges sharp; both smooth near zero (see `MA2MI.loss`
for why plain L1 does not train here).
"""

from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.models.base import Model
from mer_jax.models.layers import conv
from mer_jax.models.miacnet import (
    SHARED_BRANCHES,
    BranchSettings,
    doublings_between,
    frames_to_images,
    hflip_pair,
    preprocess_pair,
)


def _upsample2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour doubling of NHWC maps (its gradient is a cheap block sum)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _depth_to_space2(x: jax.Array) -> jax.Array:
    """(N, H, W, 4 C) -> (N, 2 H, 2 W, C): each pixel's 4 C channels become a 2 x 2 block."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height, width, 2, 2, channels // 4)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, 2 * height, 2 * width, channels // 4)


class ReconstructionDecoder(nnx.Module):
    """bottleneck(action) and position features at G x G -> residual image at R x R.

    **[our reading]**: a 1x1 conv squeezes the action features to the code; the code is
    concatenated with the position features; 3x3 conv + ReLU layers of widths
    `features` follow, the last log2(R / G) - 1 of them after a nearest 2x upsampling
    each; the output 3x3 conv makes the last doubling itself, sub-pixel style (4 x
    `out_features` channels rearranged into 2 x 2 blocks, as in ESPCN), which keeps
    every conv off the full R x R grid - on a CPU the decoder otherwise cost more than
    both branches together.
    """

    def __init__(
        self,
        embed_features: int,
        *,
        bottleneck: int,
        features: Sequence[int],
        out_features: int,
        grid: int,
        recon_size: int,
        dtype: DTypeLike,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the bottleneck conv, the `features` convs and the output conv."""
        self.doublings = doublings_between(recon_size, grid)
        if not features or len(features) < self.doublings - 1:
            raise ValueError(
                f"decoder_features {tuple(features)} has {len(features)} layers; going from "
                f"grid {grid} to recon_size {recon_size} needs at least "
                f"{max(self.doublings - 1, 1)}"
            )
        self.bottleneck = conv(embed_features, bottleneck, (1, 1), dtype=dtype, rngs=rngs)
        widths = [embed_features + bottleneck, *features]
        self.convs = nnx.List(
            [
                conv(n_in, n_out, (3, 3), padding="SAME", dtype=dtype, rngs=rngs)
                for n_in, n_out in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        out_channels = out_features * (4 if self.doublings else 1)
        # Zero-initialised: training starts from the copy-I_t prediction (a zero residual),
        # the baseline the action code has to beat, rather than from a random residual
        # (3.5 times the copy error on the tests' moving disks) that must first be unlearnt.
        self.out = conv(
            features[-1],
            out_channels,
            (3, 3),
            padding="SAME",
            kernel_init=nnx.initializers.zeros_init(),
            dtype=dtype,
            rngs=rngs,
        )

    def __call__(self, action: jax.Array, position: jax.Array) -> jax.Array:
        """(N, G, G, D) action and position features -> (N, R, R, out_features)."""
        x = jnp.concatenate([position, self.bottleneck(action)], axis=-1)
        first_upsampled = len(self.convs) - max(self.doublings - 1, 0)
        for i, layer in enumerate(self.convs):
            if i >= first_upsampled:
                x = _upsample2(x)
            x = nnx.relu(layer(x))
        x = self.out(x)
        return _depth_to_space2(x) if self.doublings else x


def smooth_l1(error: jax.Array, beta: jax.Array | float) -> jax.Array:
    """Elementwise smooth L1 (Fast R-CNN): 0.5 e^2 / beta below beta, |e| - 0.5 beta above.

    `beta` broadcasts against `error`; beta = 0 is plain L1.
    """
    magnitude = jnp.abs(error)
    beta = jnp.asarray(beta, magnitude.dtype)
    quadratic = 0.5 * magnitude**2 / jnp.maximum(beta, 1e-12)
    return jnp.where(magnitude < beta, quadratic, magnitude - 0.5 * beta)


def image_gradient_l1(
    reconstruction: jax.Array, target: jax.Array, beta: jax.Array | float = 0.0
) -> jax.Array:
    """Mean (smooth) L1 between the row-wise plus the column-wise finite differences."""

    def differences(images: jax.Array) -> tuple[jax.Array, jax.Array]:
        return images[:, 1:] - images[:, :-1], images[:, :, 1:] - images[:, :, :-1]

    (rec_rows, rec_cols), (tgt_rows, tgt_cols) = differences(reconstruction), differences(target)
    return smooth_l1(rec_rows - tgt_rows, beta).mean() + smooth_l1(rec_cols - tgt_cols, beta).mean()


class MA2MI(Model):
    """MIACNet's two branches and a reconstruction decoder, for pre-training on frame pairs.

    See the module docstring for what is published and what is our reading.
    """

    TASK: ClassVar[str] = "pretrain"
    fields: ClassVar[tuple[str, ...]] = ("frame_t", "frame_t_plus_k")
    BRANCH_SETTINGS: ClassVar[type[BranchSettings]] = BranchSettings
    # The sub-modules a pre-training exports for MIACNet (`config.init_from`).
    SHARED_BRANCHES: ClassVar[tuple[str, ...]] = SHARED_BRANCHES

    def __init__(
        self,
        *,
        recon_size: int = 28,
        bottleneck_features: int = 4,
        decoder_features: Sequence[int] = (32, 16),
        weight_gradient: float = 1.0,
        l1_beta: float = 1.0,
        hflip: bool = True,
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
        **branch_settings: Any,
    ) -> None:
        """Builds the branches (as MIACNet builds them) and the decoder.

        Args:
            recon_size: side R of the reconstructed (and target) frame; grid times a
                power of 2.
            bottleneck_features: channels of the action code the decoder reads.
            decoder_features: widths of the decoder's 3x3 convs (at least one, and at
                least log2(recon_size / grid) - 1: one per upsampling but the last).
            weight_gradient: weight of the image-gradient L1 term.
            l1_beta: width of the quadratic zone of both L1 terms (smooth L1), in
                multiples of each pair's motion RMS; 0 is plain L1 (see `loss`).
            hflip: mirror pairs (both frames together) at random in training.
            dtype: compute dtype; parameters stay float32, outputs are float32.
            rngs: initialisation randomness.
            **branch_settings: the fields of `miacnet.BranchSettings`, with MIACNet's
                meanings and defaults; a fine-tuning must use the same.
        """
        branches = BranchSettings(**branch_settings)
        self.input_size = branches.input_size
        self.grayscale = branches.grayscale
        self.recon_size = recon_size
        self.weight_gradient = weight_gradient
        self.l1_beta = l1_beta
        self.hflip = hflip
        self.dtype = dtype
        self.action, self.position = branches.build(dtype=dtype, rngs=rngs)
        self.decoder = ReconstructionDecoder(
            branches.embed_features,
            bottleneck=bottleneck_features,
            features=tuple(decoder_features),
            out_features=1 if branches.grayscale else 3,
            grid=branches.grid,
            recon_size=recon_size,
            dtype=dtype,
            rngs=rngs,
        )

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """Network inputs of uint8 (N, P, P, 3) frame pairs, on the device.

        Returns:
            `preprocess_pair`'s "motion", "face" and "motion_scale", plus "target"
            I_{t+k} and "base" I_t, float32 (N, R, R, C) in [0, 1].
        """
        first, second = batch["frame_t"], batch["frame_t_plus_k"]
        if self.hflip and train:
            first, second = hflip_pair(first, second, key)
        inputs = preprocess_pair(
            first, second, input_size=self.input_size, grayscale=self.grayscale
        )
        low = frames_to_images(
            jnp.concatenate([first, second]), size=self.recon_size, grayscale=self.grayscale
        )
        inputs["base"], inputs["target"] = jnp.split(low, 2)
        return inputs

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Reconstructs I_{t+k}; no train-dependent layers, so `train` and `key` are unused.

        Returns:
            "reconstruction", "target" and "base" (N, R, R, C) float32, and the pairs'
            "motion_scale" (N,) for the loss.
        """
        del train, key
        action = self.action(inputs["motion"].astype(self.dtype))
        position = self.position(inputs["face"].astype(self.dtype))
        residual = self.decoder(action, position).astype(jnp.float32)
        scale = inputs["motion_scale"][:, None, None, None]
        return {
            "reconstruction": inputs["base"] + scale * residual,
            "target": inputs["target"],
            "base": inputs["base"],
            "motion_scale": inputs["motion_scale"],
        }

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(Smooth) L1 + weight_gradient * (smooth) L1 of the image gradients.

        **[our reading]**: both terms are smooth L1 with a quadratic zone as wide as
        `l1_beta` x the pair's motion RMS (`l1_beta=0`: plain L1). Plain L1 stalls at the
        copy-I_t solution: most pixels of a frame difference are zero, so a still blurry
        guess of the change costs more on the static pixels than it gains on the moving
        ones, and the median answer, no change, wins. Measured on the moving-disk corpus
        of the tests: plain L1 stayed at the copy baseline for 300 Adam steps, smooth L1
        was 45% below it after 100. Errors larger than the motion stay L1 (sharp edges).

        Terms: "l1" and "gradient", the two trained terms (unweighted); "mae", the plain
        mean absolute error of the reconstruction, and "copy_mae", that of predicting
        I_{t+k} as I_t - the baseline that only the action code can beat (not trained).
        `labels` are not used: pre-training has none.
        """
        del labels
        reconstruction, target = outputs["reconstruction"], outputs["target"]
        beta = self.l1_beta * outputs["motion_scale"][:, None, None, None]
        l1 = smooth_l1(reconstruction - target, beta).mean()
        gradient = image_gradient_l1(reconstruction, target, beta)
        terms = {
            "l1": l1,
            "gradient": gradient,
            "mae": jnp.abs(reconstruction - target).mean(),
            "copy_mae": jnp.abs(outputs["base"] - target).mean(),
        }
        return l1 + self.weight_gradient * gradient, terms
