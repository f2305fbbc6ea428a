"""The models and their registry: a config's `name` picks the class, other keys configure it.

The MER classifiers (`task="loso"`: STSTNet, FR, LTR3O, DeRe-GRL, MIACNet) and the
pre-training model (`task="pretrain"`: MA2MI) and the learned spotter (`task="spotting"`)
are registered alike; `create_model`
refuses an unknown name, a key the class does not accept and a model of the other task.
"""

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from mer_jax.errors import UserError
from mer_jax.models.base import MERModel, Model
from mer_jax.models.dere_grl import DeReGRL
from mer_jax.models.fr import FR
from mer_jax.models.ltr3o import LTR3O
from mer_jax.models.ma2mi import MA2MI
from mer_jax.models.miacnet import MIACNet
from mer_jax.models.spotter import Spotter
from mer_jax.models.ststnet import STSTNet

__all__ = [
    "MODELS",
    "MERModel",
    "Model",
    "accepted_keys",
    "branch_settings",
    "config_fields",
    "create_model",
    "model_class",
    "with_build_settings",
]

MODELS: dict[str, type[Model]] = {
    "ststnet": STSTNet,
    "fr": FR,
    "ltr3o": LTR3O,
    "dere_grl": DeReGRL,
    "miacnet": MIACNet,
    "ma2mi": MA2MI,
    "spotter": Spotter,
}

# Constructor arguments the caller supplies itself rather than the model config.
_CALLER_ARGS = frozenset({"self", "num_classes", "rngs", "dtype"})


def model_class(model_config: Mapping[str, Any], task: str | None = None) -> type[Model]:
    """The registered class of `model_config["name"]`, checked against the run's task.

    Raises:
        UserError: a missing or unknown name, or a model of another task (e.g. the
            pre-training model "ma2mi" in a LOSO config).
    """
    name = model_config.get("name")
    if name not in MODELS:
        raise UserError(f"Unknown model.name {name!r}; known models: {sorted(MODELS)}.")
    cls = MODELS[name]
    if task is not None and cls.TASK != task:
        raise UserError(
            f"model.name={name!r} is a {cls.TASK!r} model, but this config's task is {task!r}; "
            f"the {task!r} models are {sorted(n for n, c in MODELS.items() if c.TASK == task)}."
        )
    return cls


def accepted_keys(cls: type[Model]) -> list[str]:
    """The model config keys a class accepts: its constructor's keyword arguments, and
    the fields of its `BRANCH_SETTINGS` where it takes those as `**branch_settings`."""
    return list(config_fields(cls))


def _override_type(annotation: Any) -> type:
    """The type a command-line value of an argument annotated `annotation` is read as:
    `int | None` -> int, `Sequence[int]` -> tuple, anything unknown -> object."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    origin = typing.get_origin(annotation) or annotation
    if origin in (tuple, list) or origin is Sequence:
        return tuple
    return origin if isinstance(origin, type) else object


def config_fields(cls: type[Model]) -> dict[str, tuple[Any, type]]:
    """Every model config key of `cls` -> (the value the model uses when a config leaves
    the key out, the type a command-line value of it is read as).

    The keys are the constructor's keyword arguments and, where it takes them as
    `**branch_settings`, the fields of its `BRANCH_SETTINGS`; the values their defaults,
    except None for the settings read from the build (`BUILD_SETTINGS`, which a config
    leaves None) and where the default is None.
    """
    parameters = inspect.signature(cls.__init__).parameters.values()
    fields = {
        p.name: (p.default, _override_type(p.annotation))
        for p in parameters
        if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name not in _CALLER_ARGS
    }
    branches = getattr(cls, "BRANCH_SETTINGS", None)
    if branches is not None:
        for field in dataclasses.fields(branches):
            fields[field.name] = (field.default, _override_type(field.type))
    for name in cls.BUILD_SETTINGS:
        fields[name] = (None, fields[name][1])
    return dict(sorted(fields.items()))


def branch_settings(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The shared-branch settings of a MIACNet or MA2MI config, defaults filled in.

    The one way a pre-training and a fine-tuning config are compared: equal settings
    build branches of identical parameter shapes.

    Raises:
        UserError: the model has no pre-trainable branches.
    """
    cls = model_class(model_config)
    branches = getattr(cls, "BRANCH_SETTINGS", None)
    if branches is None:
        raise UserError(
            f"model {model_config['name']!r} has no pre-trainable branches to initialise "
            "from (init_from works with models that share MA2MI's branches: miacnet)."
        )
    names = {field.name for field in dataclasses.fields(branches)}
    return dataclasses.asdict(branches(**{k: v for k, v in model_config.items() if k in names}))


def with_build_settings(
    model_config: Mapping[str, Any], build_metadata: Mapping[str, Any]
) -> dict[str, Any]:
    """The model config with the settings its class reads from the build filled in.

    Sizes a model must agree with the data on (e.g. DeRe-GRL's crop size, in which the
    landmarks are measured) come from the build's metadata, never from a second copy
    kept equal by hand. A config that sets one explicitly must set the build's value.

    Raises:
        UserError: an explicit value that disagrees with the build.
    """
    resolved = dict(model_config)
    for key, value in model_class(model_config).settings_from_build(build_metadata).items():
        given = resolved.get(key)
        if given is not None and given != value:
            raise UserError(
                f"model.{key}={given!r}, but the dataset was built with {key}={value!r}; "
                f"remove the override (the build's value is used) or rebuild the data with "
                f"--config.data.overrides.{key}={given!r}."
            )
        resolved[key] = value
    return resolved


def create_model(
    model_config: Mapping[str, Any],
    num_classes: int | None = None,
    *,
    rngs: nnx.Rngs,
    dtype: DTypeLike = jnp.float32,
) -> Model:
    """Builds the model named by `model_config["name"]`.

    Args:
        model_config: "name" (a key of `MODELS`) plus keyword arguments of that
            model's constructor; an ml_collections ConfigDict works too. Keys whose
            value is None are left to the constructor's default.
        num_classes: number of expression classes (classifiers only).
        rngs: initialisation randomness.
        dtype: compute dtype (parameters stay float32).

    Returns:
        The initialised model.

    Raises:
        UserError: for an unknown or missing name, or a key the model does not accept
            (typos in configs must not silently fall back to defaults).
    """
    kwargs = {k: v for k, v in dict(model_config).items() if v is not None}
    cls = model_class(kwargs)
    del kwargs["name"]
    accepted = accepted_keys(cls)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UserError(
            f"Model {model_config['name']!r} does not accept config key(s) {unknown}; "
            f"accepted: {accepted}."
        )
    if issubclass(cls, MERModel):
        return cls(num_classes, rngs=rngs, dtype=dtype, **kwargs)
    return cls(rngs=rngs, dtype=dtype, **kwargs)
