"""The learned spotter: a small network that classifies a position of a long video as
outside any expression, inside a micro-expression or inside a macro-expression, from the
pooled motion of a few sampled frames around it (`mer_jax.data.spotting.window_dataset`).

Each sampled frame's G x G x 2 flow, the head's own motion removed and each cell divided
by its typical motion in the video (`mer_jax.preprocess.long_video.normalised_motion`,
applied where the windows are made), is embedded by one dense layer shared over time;
the window's embeddings, in order, go through one hidden layer to the class logits.
Trained under LOSO by the stacked engine like the MER classifiers
(`mer_jax.train.spotting.SpottingRun`); its probabilities of "some expression" and of
"micro" are what `mer_jax.evaluate.spotting.spot_by_type` turns into intervals.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.errors import UserError
from mer_jax.models.base import MERModel


class Spotter(MERModel):
    """Per-frame embedding shared over the window, then a hidden layer (module docstring)."""

    TASK: ClassVar[str] = "spotting"
    fields: ClassVar[tuple[str, ...]] = ("motion",)
    BUILD_SETTINGS: ClassVar[Mapping[str, Callable[[Mapping[str, Any]], Any]]] = {
        "grid": lambda metadata: int(metadata["grid"]),
        "window": lambda metadata: int(metadata["window"]),
    }

    def __init__(
        self,
        num_classes: int,
        *,
        grid: int = 8,
        window: int = 9,
        frame_features: int = 16,
        hidden_features: int = 64,
        dropout: float = 0.1,
        class_weights: Sequence[float] = (1.0, 1.0, 1.0),
        dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        """Builds the network.

        Args:
            num_classes: the window classes (none, micro, macro).
            grid: G of the stored G x G x 2 pooled flow (read from the build).
            window: sampled frames per window, 2 x radius + 1 (read from the windows).
            frame_features: width of each frame's embedding.
            hidden_features: width of the hidden layer over the whole window.
            dropout: dropout rate before the classifier, in training.
            class_weights: the loss weight of a window of each class (none, micro,
                macro): micro-expressions are rare and faint, and a spotter that never
                says "micro" loses little cross-entropy.
        """
        if len(class_weights) != num_classes or min(class_weights) <= 0:
            raise UserError(
                f"model.class_weights={tuple(class_weights)}: give {num_classes} positive "
                "weights, one per window class (none, micro, macro)."
            )
        self.class_weights = tuple(float(w) for w in class_weights)
        self.grid = grid
        self.window = window
        self.embed = nnx.Linear(grid * grid * 2, frame_features, dtype=dtype, rngs=rngs)
        self.hidden = nnx.Linear(window * frame_features, hidden_features, dtype=dtype, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.classifier = nnx.Linear(hidden_features, num_classes, dtype=dtype, rngs=rngs)

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """Returns {"motion": (batch, window, G * G * 2)}: each sampled frame's flow (the
        head's motion removed and each cell normalised per video by the windows,
        `mer_jax.preprocess.long_video.normalised_motion`), flattened."""
        del key, train
        motion = batch["motion"].astype(jnp.float32)
        return {"motion": motion.reshape(*motion.shape[:2], -1)}

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Returns {"logits": (batch, num_classes) float32}."""
        x = nnx.relu(self.embed(inputs["motion"]))
        x = nnx.relu(self.hidden(x.reshape(x.shape[0], -1)))
        x = self.dropout(x, deterministic=not train, rngs=key)
        return {"logits": self.classifier(x).astype(jnp.float32)}

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Cross-entropy, each window weighted by its class's weight (the weighted mean);
        terms {"ce"}."""
        logits = outputs["logits"]
        per_window = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        weights = jnp.asarray(self.class_weights, jnp.float32)[labels]
        ce = jnp.sum(weights * per_window) / jnp.sum(weights)
        return ce, {"ce": ce}
