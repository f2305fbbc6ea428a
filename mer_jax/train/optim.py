"""The optimizer, from `config.train`: one optax chain, every part configured."""

import ml_collections
import optax

from mer_jax.errors import UserError

_OPTIMIZERS = {
    "adam": lambda lr, wd: optax.adam(lr) if wd == 0 else optax.adamw(lr, weight_decay=wd),
    "sgd": lambda lr, wd: optax.chain(optax.add_decayed_weights(wd), optax.sgd(lr, momentum=0.9)),
}


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


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The optimizer of `config.train` (name, learning rate, schedule, decay, clipping)."""
    if train.optimizer not in _OPTIMIZERS:
        raise UserError(
            f"Unknown train.optimizer {train.optimizer!r}; use one of {sorted(_OPTIMIZERS)}."
        )
    tx = _OPTIMIZERS[train.optimizer](learning_rate_schedule(train), train.weight_decay)
    if train.grad_clip > 0:
        tx = optax.chain(optax.clip_by_global_norm(train.grad_clip), tx)
    return tx
