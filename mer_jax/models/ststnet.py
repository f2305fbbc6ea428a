"""STSTNet: Shallow Triple Stream Three-dimensional CNN (Liong et al., FG 2019).

The project's baseline, in two variants (`variant`):

- "paper", as the paper describes it. Input: the onset -> apex optical flow u, v and the
  optical strain magnitude, 3 x 28 x 28. Three parallel shallow branches (conv 3x3 with
  3, 5 and 8 filters, ReLU, max-pool 3x3 stride 3 'same', average-pool 2x2 stride 2) are
  concatenated into 16 maps of 5 x 5, flattened and classified by one dense layer:
  1,651 parameters for 3 classes, 2,453 for 5.
- "released", as the authors' released PyTorch code builds it (the code behind the
  published numbers; docs/methods.md lists the differences): each branch is conv 3x3 with
  padding 2 (28 -> 30), ReLU, BatchNorm, max-pool 3x3 stride 3 padding 1 (-> 10),
  dropout 0.5; the 16 maps are average-pooled 2x2 (-> 5), flattened and classified by
  one dense layer, with PyTorch's default initialisation: 1,683 parameters for 3
  classes, 2,485 for 5.

The paper trains with Adam, lr 5e-5, batch 256, 800 epochs, without augmentation, and
pools the last epoch's predictions; published composite result (MEGC2019, LOSO, 442
samples, arXiv 1902.03634): UF1 .7353, UAR .7605 (configs/protocols/).
"""

from collections.abc import Mapping, Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
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

VARIANTS = ("paper", "released")
# The three inputs of the paper: flow u, flow v, optical strain.
_IN_CHANNELS = 3
_KERNEL = 3
_MAX_POOL = 3
_AVG_POOL = 2
# The released code: conv padding 2, max-pool padding 1, dropout 0.5 after the pool.
_RELEASED_CONV_PADDING = 2
_RELEASED_POOL_PADDING = 1
_RELEASED_DROPOUT = 0.5
# The released code's three streams are separate layers, conv1/bn1 (3 filters), conv2/bn2
# (5) and conv3/bn3 (8), concatenated in that order before the average pool.
_OFFICIAL_STREAMS = ("1", "2", "3")


def _torch_uniform(fan_in: int) -> nnx.Initializer:
    """PyTorch's default Conv2d / Linear initialisation of weights and biases alike:
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5) for weights)."""
    bound = fan_in**-0.5

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class STSTNet(MERModel):
    """STSTNet on [u, v, strain] maps; see the module docstring for both variants."""

    fields: ClassVar[tuple[str, ...]] = ("flow", "strain")

    def __init__(
        self,
        num_classes: int,
        *,
        variant: str = "paper",
        input_size: int = 28,
        branch_features: Sequence[int] = (3, 5, 8),
        hflip: bool = False,
        label_smoothing: float = 0.0,
        motion_norm: str = "minmax",
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the network.

        Args:
            num_classes: number of expression classes.
            variant: "paper" (the paper's description) or "released" (the authors' code).
            input_size: side of the square input grid; built datasets at another
                size are resized to it in `prepare`.
            branch_features: output channels of the three streams (paper: 3, 5, 8).
            hflip: random horizontal-flip augmentation in training (not in the paper).
            label_smoothing: cross-entropy label smoothing (paper: none).
            motion_norm: "minmax" (the authors': each map of each sample to [0, 1]) or
                "scale" (**[ours]**, `layers.scale_normalize`).
            dtype: compute dtype; parameters stay float32, logits are float32.
            rngs: initialisation randomness.

        Raises:
            UserError: an unknown variant.
        """
        if variant not in VARIANTS:
            raise UserError(f"STSTNet variant {variant!r}: expected one of {VARIANTS}.")
        self.num_classes = num_classes
        self.input_size = input_size
        self.variant = variant
        self.hflip = hflip
        self.label_smoothing = label_smoothing
        self.motion_norm = check_motion_norm(motion_norm)
        # The three streams are conv -> ReLU (-> BatchNorm) -> pools (-> dropout), all
        # channel-wise after the conv, so one conv with 3 + 5 + 8 filters is exactly the
        # three streams concatenated (same parameters, same per-filter fan-in at init) in
        # one op instead of three.
        features = sum(branch_features)
        released = variant == "released"
        if released:
            pad = _RELEASED_CONV_PADDING
            conv_init = _torch_uniform(_IN_CHANNELS * _KERNEL * _KERNEL)
            self.streams = conv(
                _IN_CHANNELS,
                features,
                (_KERNEL, _KERNEL),
                padding=((pad, pad), (pad, pad)),
                kernel_init=conv_init,
                bias_init=conv_init,
                dtype=dtype,
                rngs=rngs,
            )
            self.norm = batch_norm(features, dtype=dtype, rngs=rngs)
            conv_size = input_size + 2 * pad - _KERNEL + 1
            max_pooled = (conv_size + 2 * _RELEASED_POOL_PADDING) // _MAX_POOL
        else:
            self.streams = conv(
                _IN_CHANNELS, features, (_KERNEL, _KERNEL), padding="SAME", dtype=dtype, rngs=rngs
            )
            self.norm = None
            # 'same' max-pooling keeps ceil(size / 3).
            max_pooled = -(-input_size // _MAX_POOL)
        self.dropout = nnx.Dropout(_RELEASED_DROPOUT if released else 0.0)
        pooled = max_pooled // _AVG_POOL
        flat = features * pooled * pooled
        dense_init = {"kernel_init": _torch_uniform(flat), "bias_init": _torch_uniform(flat)}
        self.classifier = nnx.Linear(
            flat, num_classes, dtype=dtype, rngs=rngs, **(dense_init if released else {})
        )

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """Returns {"motion": (batch, size, size, 3)} [u, v, strain], normalised per sample."""
        motion = motion_input(
            batch,
            key,
            size=self.input_size,
            use_strain=True,
            hflip=self.hflip and train,
            motion_norm=self.motion_norm,
        )
        return {"motion": motion}

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Returns {"logits": (batch, num_classes) float32}.

        `train` (released variant) normalises with the batch statistics, updates the
        running ones and drops out with `key`.
        """
        x = nnx.relu(self.streams(inputs["motion"]))
        if self.norm is None:
            x = max_pool(x, _MAX_POOL, padding="SAME")
        else:
            x = self.norm(x, use_running_average=not train)
            x = max_pool(x, _MAX_POOL, padding=_RELEASED_POOL_PADDING)
        x = self.dropout(x, deterministic=not train, rngs=key)
        x = nnx.avg_pool(x, (_AVG_POOL, _AVG_POOL), strides=(_AVG_POOL, _AVG_POOL))
        logits = self.classifier(x.reshape(x.shape[0], -1))
        return {"logits": logits.astype(jnp.float32)}

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy; terms {"ce"}."""
        ce = cross_entropy(outputs["logits"], labels, label_smoothing=self.label_smoothing)
        return ce, {"ce": ce}


def load_official_weights(model: STSTNet, state_dict: Mapping[str, np.ndarray]) -> None:
    """Sets a released-variant STSTNet to the weights of the authors' PyTorch code.

    `state_dict` is their `STSTNet.state_dict()` (christy1206/STSTNet, main.py; read
    with `mer_jax.models.torch_weights.read_state_dict`): conv1..3 and bn1..3 become the
    three stream groups of our one conv and BatchNorm, in order, and fc becomes the
    classifier with its inputs reordered from PyTorch's (channel, row, column) flattening
    to our (row, column, channel) one. The network then computes their forward pass on
    the same input; the official code feeds `cv2.imread` images as they are: float
    0..255 in the file's BGR order.

    Raises:
        UserError: not the released variant at the authors' sizes, or a state dict whose
            names or shapes are not theirs for this number of classes.
    """
    features = (3, 5, 8)
    size = model.streams.kernel.value.shape[-1]
    if model.variant != "released" or model.input_size != 28 or size != sum(features):
        raise UserError(
            "the authors' STSTNet weights fit variant='released' with input_size 28 and "
            "branch_features (3, 5, 8)"
        )
    expected = {"fc.weight": (model.num_classes, 16 * 5 * 5), "fc.bias": (model.num_classes,)}
    for stream, width in zip(_OFFICIAL_STREAMS, features, strict=True):
        expected[f"conv{stream}.weight"] = (width, _IN_CHANNELS, _KERNEL, _KERNEL)
        for name in ("weight", "bias", "running_mean", "running_var"):
            expected[f"bn{stream}.{name}"] = (width,)
        expected[f"conv{stream}.bias"] = (width,)
    problems = [
        f"{name}: {'missing' if name not in state_dict else tuple(state_dict[name].shape)}"
        f" (expected {shape})"
        for name, shape in expected.items()
        if name not in state_dict or tuple(state_dict[name].shape) != shape
    ]
    unknown = sorted(
        name for name in state_dict if name not in expected and not name.endswith("batches_tracked")
    )
    problems += [f"{name}: unexpected" for name in unknown]
    if problems:
        raise UserError(
            f"not the authors' STSTNet state dict for {model.num_classes} classes: "
            + "; ".join(problems)
        )

    def streams(template: str, transpose: tuple[int, ...] | None = None) -> jax.Array:
        parts = [np.asarray(state_dict[template.format(s)], np.float32) for s in _OFFICIAL_STREAMS]
        if transpose is not None:
            parts = [part.transpose(transpose) for part in parts]
        return jnp.asarray(np.concatenate(parts, axis=-1))

    # PyTorch conv weights are (out, in, rows, columns); ours (rows, columns, in, out).
    model.streams.kernel.value = streams("conv{}.weight", (2, 3, 1, 0))
    model.streams.bias.value = streams("conv{}.bias")
    model.norm.scale.value = streams("bn{}.weight")
    model.norm.bias.value = streams("bn{}.bias")
    model.norm.mean.value = streams("bn{}.running_mean")
    model.norm.var.value = streams("bn{}.running_var")
    weight = np.asarray(state_dict["fc.weight"], np.float32)
    pooled = int(round((weight.shape[1] // size) ** 0.5))
    kernel = weight.reshape(model.num_classes, size, pooled, pooled).transpose(2, 3, 1, 0)
    model.classifier.kernel.value = jnp.asarray(kernel.reshape(-1, model.num_classes))
    model.classifier.bias.value = jnp.asarray(np.asarray(state_dict["fc.bias"], np.float32))
