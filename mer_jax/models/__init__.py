"""MER methods and their registry: a config's `name` picks the class, other keys configure it."""

import inspect
from collections.abc import Iterable, Mapping
from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.errors import UserError
from mer_jax.models.base import MERModel
from mer_jax.models.dere_grl import DeReGRL
from mer_jax.models.fr import FR
from mer_jax.models.ltr3o import LTR3O
from mer_jax.models.miacnet import MIACNet
from mer_jax.models.ststnet import STSTNet

MODELS: dict[str, type[MERModel]] = {
    "ststnet": STSTNet,
    "fr": FR,
    "ltr3o": LTR3O,
    "dere_grl": DeReGRL,
    "miacnet": MIACNet,
}

# Constructor arguments the caller supplies itself rather than the model config.
_CALLER_ARGS = frozenset({"self", "num_classes", "rngs", "dtype"})


def model_settings(model_config: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The values of constructor arguments `keys` of the configured method (see
    `constructor_settings`)."""
    return constructor_settings(MODELS[model_config["name"]], model_config, keys)


def constructor_settings(
    model_class: type, model_config: Mapping[str, Any], keys: Iterable[str]
) -> dict[str, Any]:
    """The values of constructor arguments `keys` of `model_class`: the config's where it
    sets them, else the constructor's defaults (e.g. to compare a fine-tuning config with
    the pre-training that made its initial weights)."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(model_class.__init__).parameters.items()
    }
    return {key: model_config[key] if key in model_config else defaults.get(key) for key in keys}


def create_model(
    model_config: Mapping[str, Any],
    num_classes: int,
    *,
    rngs: nnx.Rngs,
    dtype: DTypeLike = jnp.float32,
) -> MERModel:
    """Builds the method named by `model_config["name"]`.

    Args:
        model_config: "name" (a key of `MODELS`) plus keyword arguments of that
            method's constructor; an ml_collections ConfigDict works too.
        num_classes: number of expression classes.
        rngs: initialisation randomness.
        dtype: compute dtype (parameters stay float32).

    Returns:
        The initialised model.

    Raises:
        UserError: for an unknown name, a missing name, or a key the method does not
            accept (typos in configs must not silently fall back to defaults).
    """
    kwargs = dict(model_config)
    name = kwargs.pop("name", None)
    if name not in MODELS:
        raise UserError(f"Unknown model name {name!r}; known models: {sorted(MODELS)}.")
    model_class = MODELS[name]
    accepted = sorted(set(inspect.signature(model_class.__init__).parameters) - _CALLER_ARGS)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserError(
            f"Model {name!r} does not accept config key(s) {unknown}; accepted: {accepted}."
        )
    return model_class(num_classes, rngs=rngs, dtype=dtype, **kwargs)
