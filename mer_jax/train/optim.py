"""The optimizer, from `config.train`: one optax chain, every part configured."""

from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import optax

from mer_jax.errors import UserError

OPTIMIZERS = {
    "adam": lambda lr, wd, mask: (
        optax.adam(lr) if wd == 0 else optax.adamw(lr, weight_decay=wd, mask=mask)
    ),
    "sgd": lambda lr, wd, mask: optax.chain(
        optax.add_decayed_weights(wd, mask), optax.sgd(lr, momentum=0.9)
    ),
}


def _kernels_only(params: Any) -> Any:
    """True for the weight matrices and conv kernels (leaves named "kernel"), False for
    biases, norm scales and offsets, and learned embeddings (position tokens, graphs)."""

    def is_kernel(path: tuple[Any, ...], _: Any) -> bool:
        # An nnx.State path ends in the variable's name, then its "value" attribute.
        names = [getattr(key, "key", getattr(key, "name", None)) for key in path]
        if names and names[-1] == "value":
            names.pop()
        return bool(names) and names[-1] == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


# Which parameters `train.weight_decay` shrinks: "all" (AdamW's and the configs' default)
# or "kernels" (**[ours]**: weight matrices and kernels only, as is common for ViTs:
# decaying a LayerNorm's scale or a position embedding pulls it to zero, not to a prior).
DECAY_MASKS = {"all": None, "kernels": _kernels_only}


SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
    """Constant or cosine decay, each after an optional linear warm-up."""
    decay_steps = max(train.steps - train.warmup_steps, 1)
    schedules = {
        "constant": optax.constant_schedule(train.learning_rate),
        "cosine": optax.cosine_decay_schedule(train.learning_rate, decay_steps),
    }
    if train.schedule not in schedules:
        raise UserError(
            f"Unknown train.schedule {train.schedule!r}; use one of {sorted(schedules)}."
        )
    if train.warmup_steps == 0:
        return schedules[train.schedule]
    warmup = optax.linear_schedule(0.0, train.learning_rate, train.warmup_steps)
    return optax.join_schedules([warmup, schedules[train.schedule]], [train.warmup_steps])


def make_optimizer(
    train: ml_collections.ConfigDict, pretrained_branches: Sequence[str] = ()
) -> optax.GradientTransformation:
    """The optimizer of `config.train` (name, learning rate, schedule, decay, clipping).

    `pretrained_branches` names the top-level sub-modules loaded by `init_from`: their
    updates are multiplied by `train.pretrained_lr_scale` (0 freezes them, with no
    optimizer state kept for them). Without them (training from scratch) the scale has
    nothing to act on, so a fine-tuning config can carry it for its `init_from` runs.
    """
    # A pre-training config (configs/ma2mi_pretrain.py) has no init_from, nor this field.
    scale = train.get("pretrained_lr_scale", 1.0)
    if scale < 0:
        raise UserError(f"train.pretrained_lr_scale must be >= 0, got {scale}.")
    tx = _base_optimizer(train)
    if scale == 1.0 or not pretrained_branches:
        return tx
    pretrained_tx = optax.set_to_zero() if scale == 0 else optax.chain(tx, optax.scale(scale))

    def labels(params: Any) -> Any:
        def label(path: tuple[Any, ...], _: Any) -> str:
            return "pretrained" if path[0].key in pretrained_branches else "new"

        return jax.tree_util.tree_map_with_path(label, params)

    return optax.multi_transform({"new": tx, "pretrained": pretrained_tx}, labels)


def _base_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    if train.optimizer not in OPTIMIZERS:
        raise UserError(
            f"Unknown train.optimizer {train.optimizer!r}; use one of {sorted(OPTIMIZERS)}."
        )
    decay_on = train.get("weight_decay_on", "all")
    if decay_on not in DECAY_MASKS:
        raise UserError(
            f"Unknown train.weight_decay_on {decay_on!r}; use one of {sorted(DECAY_MASKS)}."
        )
    tx = OPTIMIZERS[train.optimizer](
        learning_rate_schedule(train), train.weight_decay, DECAY_MASKS[decay_on]
    )
    if train.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(train.grad_clip), tx)
    return tx
