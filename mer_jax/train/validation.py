"""One validation pass over the whole config, before anything is loaded, built or written.

Every field of the schema (`configs/common.py`) is checked against its rule (type,
range, choices), then the rules that tie fields together (a schedule made of whole
dispatches and checkpoints, unique integer seeds, a model of the config's task with
only keys it accepts). Every problem found is reported, one line each, naming the
field, the value and what is accepted. What needs the data (the batch against a
fold's training set) or the workdir is checked by the run before it trains.
"""

import math
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

import jax

from mer_jax import models
from mer_jax.data import protocols
from mer_jax.errors import UserError
from mer_jax.models import ststnet
from mer_jax.train import optim

TASKS = ("loso", "pretrain", "spotting", "spot_baseline")
# Tasks without a trained model: their config's model section is not read.
MODEL_FREE_TASKS = ("spot_baseline",)
# The values jax.transfer_guard accepts.
TRANSFER_GUARDS = ("allow", "log", "disallow", "log_explicit", "disallow_explicit")

# A rule returns None for a good value, else what would be accepted.
Rule = Callable[[Any], str | None]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value > 0 else "a positive integer"


def non_negative_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "an integer >= 0"


def positive_number(value: Any) -> str | None:
    return None if _is_number(value) and value > 0 else "a finite number > 0"


def non_negative_number(value: Any) -> str | None:
    return None if _is_number(value) and value >= 0 else "a finite number >= 0"


def flag(value: Any) -> str | None:
    return None if isinstance(value, bool) else "True or False"


def text(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a non-empty string"


def one_of(*choices: Any) -> Rule:
    return lambda value: None if value in choices else f"one of {', '.join(map(repr, choices))}"


def optional(rule: Rule) -> Rule:
    return lambda value: None if value is None else rule(value)


def fraction(value: Any) -> str | None:
    return None if _is_number(value) and 0 <= value <= 1 else "a number in [0, 1]"


def odd_width(value: Any) -> str | None:
    return None if _is_int(value) and value >= 1 and value % 2 else "an odd integer >= 1"


def device_count(value: Any) -> str | None:
    return None if _is_int(value) and (value == -1 or value > 0) else "-1 (all) or a count >= 1"


def seeds(value: Any) -> str | None:
    accepted = "a non-empty tuple of distinct integers, e.g. (0, 1, 2)"
    if not isinstance(value, (tuple, list)) or not value:
        return accepted
    if not all(_is_int(seed) and seed >= 0 for seed in value):
        return accepted + " (each >= 0)"
    return None if len(set(value)) == len(value) else accepted + " (no seed twice)"


def inner_fold_count(value: Any) -> str | None:
    ok = _is_int(value) and (value == 0 or value >= 2)
    return None if ok else "0 (leave one subject out) or a number of folds >= 2"


def subject_names(value: Any) -> str | None:
    ok = isinstance(value, (tuple, list)) and all(isinstance(s, str) for s in value)
    return None if ok else "a tuple of namespaced subjects, e.g. ('casme3/spNO.1',)"


def _is_mapping(value: Any) -> bool:
    # ml_collections' ConfigDict is not a Mapping, but has keys and items.
    return isinstance(value, Mapping) or hasattr(value, "items") and hasattr(value, "keys")


def mapping(value: Any) -> str | None:
    return None if _is_mapping(value) else "a dict of builder config fields"


def _shown(value: Any) -> str:
    """A value as one line (a ConfigDict prints as a dict)."""
    if _is_mapping(value) and not isinstance(value, dict):
        value = dict(value.items())
    return repr(value).replace("\n", " ")


# The schema shared by every task, then what each task adds.
COMMON_RULES: dict[str, Rule] = {
    "task": one_of(*TASKS),
    "seeds": seeds,
    "init_from": optional(text),
    "data.name": text,
    "data.data_dir": optional(text),
    "data.manual_dir": optional(text),
    "data.builder_config": optional(text),
    "data.overrides": mapping,
    "data.protocol": optional(one_of(*sorted(protocols.PROTOCOLS))),
    "data.split": one_of("loso", "lodo"),
    "data.strict": flag,
    "data.errata": optional(text),
    "train.steps": positive_int,
    "train.batch_size": positive_int,
    "train.optimizer": one_of(*optim.OPTIMIZERS),
    "train.learning_rate": positive_number,
    "train.weight_decay": non_negative_number,
    "train.weight_decay_on": one_of(*optim.DECAY_MASKS),
    "train.schedule": one_of(*optim.SCHEDULES),
    "train.warmup_steps": non_negative_int,
    "train.grad_clip": non_negative_number,
    "train.sampling": one_of("uniform", "balanced"),
    "train.pretrained_lr_scale": non_negative_number,
    "train.checkpoint_every": positive_int,
    "tune.grid": mapping,
    "tune.inner_folds": inner_fold_count,
    "tune.seeds": optional(seeds),
    "tune.choices_from": optional(text),
    "engine.mode": one_of("auto", "stacked", "sequential"),
    "engine.replicas_per_chunk": non_negative_int,
    "engine.devices": device_count,
    "engine.steps_per_dispatch": positive_int,
    "engine.loop": one_of("auto", "scan", "python"),
    "engine.compute_dtype": one_of("float32", "bfloat16"),
    "engine.transfer_guard": one_of(*TRANSFER_GUARDS),
}
# How spotted scores become intervals (`mer_jax.evaluate.spotting.spot`).
_SPOT_RULES: dict[str, Rule] = {
    "spotting.smooth_width": odd_width,
    "spotting.relative_threshold": fraction,
    "spotting.min_score": fraction,
}
TASK_RULES: dict[str, dict[str, Rule]] = {
    "loso": {},
    "spot_baseline": _SPOT_RULES,
    "spotting": {
        **_SPOT_RULES,
        "spotting.radius": non_negative_int,
        "spotting.micro_length_s": positive_number,
    },
    "pretrain": {
        "data.exclude_subjects": subject_names,
        "data.streaming": one_of("auto", "resident", "grain"),
        "data.resident_max_mb": positive_number,
        "data.grain_threads": positive_int,
    },
}
# Model settings with a rule of their own, by model.name (any other model key is checked
# for existence here and for its value by the model's constructor, once the data is read).
MODEL_RULES: dict[str, dict[str, Rule]] = {
    "ststnet": {"variant": one_of(*ststnet.VARIANTS)},
    "dere_grl": {"weight_au": non_negative_number, "weight_rec": non_negative_number},
}
# Sections whose keys are all in the schema (model keys are checked against the model).
_SECTIONS = ("data", "train", "engine", "tune", "spotting")
# Sections a tuning grid may vary (the data and the engine layout stay one).
_TUNABLE = ("train", "model")


def _get(config: Any, dotted: str) -> tuple[bool, Any]:
    holder = config
    for part in dotted.split("."):
        if not _is_mapping(holder):
            return False, None
        if part not in holder:
            return False, None
        holder = holder[part]
    return True, holder


def problems(config: Any) -> list[str]:
    """Every problem of `config`, one line each (empty: the config is valid)."""
    found: list[str] = []
    task = config.get("task", "loso")
    rules = {**COMMON_RULES, **TASK_RULES.get(task, {})}
    for dotted, rule in rules.items():
        present, value = _get(config, dotted)
        if not present:
            found.append(f"{dotted} is missing; derive the config from configs/common.py.")
            continue
        accepted = rule(value)
        if accepted is not None:
            found.append(f"{dotted}={_shown(value)}: expected {accepted}.")
    known = {dotted.split(".")[0] for dotted in rules} | {"model"}
    found += [
        f"unknown config field {key!r}; known: {sorted(known)}."
        for key in config
        if key not in known
    ]
    for section in _SECTIONS:
        present, values = _get(config, section)
        if present and _is_mapping(values):
            names = sorted(d.split(".", 1)[1] for d in rules if d.startswith(section + "."))
            found += [
                f"unknown config field {section}.{key}; {section} has: {', '.join(names)}."
                for key in values
                if f"{section}.{key}" not in rules
            ]
    if found:
        return found  # the cross-field rules below read these fields
    found = _cross_field_problems(config, task)
    return found or _grid_problems(config, task)


def _grid_problems(config: Any, task: str) -> list[str]:
    """The tuning grid: tunable sections, existing fields, non-empty value lists, and every
    grid point a valid config."""
    grid = config.tune.grid
    if not len(grid):
        if config.tune.choices_from:
            return [
                f"tune.choices_from={config.tune.choices_from!r} needs the grid those choices "
                "were made over: give tune.grid as that run had it."
            ]
        return []
    if task != "loso":
        return ["tune.grid: nested selection is for LOSO runs, not for pre-training."]
    found = []
    for section in grid:
        if section not in _TUNABLE or not _is_mapping(grid[section]):
            found.append(
                f"tune.grid.{section}: a grid varies fields of {' or '.join(_TUNABLE)}, as "
                f"{{'train': {{'learning_rate': (1e-3, 3e-3)}}}}."
            )
            continue
        for name, values in grid[section].items():
            if not isinstance(values, (tuple, list)) or not values:
                found.append(
                    f"tune.grid.{section}.{name}={_shown(values)}: expected a non-empty tuple "
                    "of values to try."
                )
            elif section == "train" and name not in config.train:
                found.append(f"tune.grid.train.{name}: train has no field {name!r}.")
    if found:
        return found
    from mer_jax import workdir  # the grid's points, as the engine expands them
    from mer_jax.train import tuning

    for point in workdir.grid_points(config):
        point_problems = problems(workdir.apply_point(config, point))
        found += [f"tune.grid point {workdir.describe(point)}: {p}" for p in point_problems]
    if config.tune.choices_from and not found:
        try:  # the source run's files and grid (its folds are checked with the data)
            tuning.read_choices(config.tune.choices_from, config)
        except UserError as error:
            found.append(str(error))
    return found


def _cross_field_problems(config: Any, task: str) -> list[str]:
    found = []
    train, engine = config.train, config.engine
    steps, per_dispatch, every = train.steps, engine.steps_per_dispatch, train.checkpoint_every
    # (Together these make train.steps whole dispatches too.)
    if every % per_dispatch or steps % every:
        found.append(
            f"train.checkpoint_every={every} must be a multiple of "
            f"engine.steps_per_dispatch={per_dispatch} and divide train.steps={steps} "
            "(checkpoints are taken between dispatches, the last at the end)."
        )
    if train.warmup_steps >= steps:
        found.append(f"train.warmup_steps={train.warmup_steps} must be below train.steps={steps}.")
    devices = len(jax.devices())
    if engine.devices > devices:
        found.append(f"engine.devices={engine.devices}: only {devices} devices exist here.")
    if config.init_from is not None and not pathlib.Path(config.init_from).expanduser().is_dir():
        found.append(
            f"init_from={config.init_from!r} is not a folder; give the workdir of a finished "
            "pre-training (configs/ma2mi_pretrain.py)."
        )
    if task == "pretrain":
        if len(config.seeds) != 1:
            found.append(
                f"seeds={tuple(config.seeds)}: pre-training trains one model; give one seed, "
                "e.g. (0,)."
            )
        if config.init_from is not None:
            found.append("init_from is for LOSO runs (fine-tuning), not for pre-training.")
    if task in MODEL_FREE_TASKS:
        return found
    try:
        cls = models.model_class(config.model, task)
        unknown = sorted(set(config.model) - {"name"} - set(models.accepted_keys(cls)))
        if unknown:
            found.append(
                f"model.{unknown[0]}: model {config.model.name!r} has no such setting "
                f"(unknown: {unknown}); it accepts: {', '.join(models.accepted_keys(cls))}."
            )
        for key, rule in MODEL_RULES.get(config.model.name, {}).items():
            value = config.model.get(key)
            accepted = None if value is None else rule(value)
            if accepted is not None:
                found.append(f"model.{key}={_shown(value)}: expected {accepted}.")
        if config.init_from is not None:
            models.branch_settings(config.model)  # a model with branches to initialise
    except UserError as error:
        found.append(str(error))
    return found


def check_config(config: Any) -> None:
    """Raises UserError naming every problem of `config`, one line each."""
    found = problems(config)
    if len(found) == 1:
        raise UserError(found[0])
    if found:
        lines = "\n".join(f"  {line}" for line in found)
        raise UserError(f"the config has {len(found)} problems:\n{lines}")
