"""Every model constructor argument is a config field, with its default, on every config:
any `--config.model.X=V` names an existing field (launch.py's `with_model_defaults`)."""

import importlib
from pathlib import Path

import pytest

import launch
from configs.protocols import base
from mer_jax import models
from mer_jax.train import validation

ROOT = Path(__file__).resolve().parents[1]
# The configs that train a model (the training-free spotting baseline has none).
CONFIGS = sorted(
    path.stem
    for path in (ROOT / "configs").glob("*.py")
    if path.stem not in ("__init__", "common")
    and importlib.import_module(f"configs.{path.stem}").get_config().task
    not in validation.MODEL_FREE_TASKS
)
PROTOCOLS = sorted(
    path.stem
    for path in (ROOT / "configs" / "protocols").glob("*.py")
    if path.stem not in ("__init__", "base")
)
# (the --config value, its module, the argument after the colon)
CASES = [(f"configs/{name}.py", f"configs.{name}", ()) for name in CONFIGS] + [
    (f"configs/protocols/{name}.py:{method}", f"configs.protocols.{name}", (method,))
    for name in PROTOCOLS
    for method in base.METHODS
]


@pytest.mark.parametrize("flag, module, args", CASES, ids=[case[0] for case in CASES])
def test_every_constructor_argument_is_a_field_with_its_default(flag, module, args):
    written = importlib.import_module(module).get_config(*args).model
    loaded = launch.parse(["--config", flag]).config.model
    model_class = models.MODELS[loaded.name]
    fields = models.config_fields(model_class)
    assert set(loaded) - {"name"} == set(fields)
    for key, (default, _) in fields.items():
        # What the file sets deliberately stays; the rest is the constructor's default
        # (None for a setting read from the build).
        expected = written[key] if key in written else default
        assert loaded[key] == expected, (flag, key)
    for key in model_class.BUILD_SETTINGS:
        assert loaded[key] is None, (flag, key)


def test_the_documented_variant_override_validates_on_the_plain_config():
    config = launch.parse(
        ["--config", "configs/ststnet.py", "--config.model.variant=released"]
    ).config
    assert config.model.variant == "released"
    validation.check_config(config)


def test_an_override_of_a_field_whose_default_is_none_is_typed():
    config = launch.parse(["--config", "configs/fr.py", "--config.model.hidden_features=12"]).config
    assert config.model.hidden_features == 12
    validation.check_config(config)


def test_another_model_by_override_gets_its_own_fields():
    config = launch.parse(
        ["--config", "configs/ststnet.py", "--config.model.name=fr", "--config.model.dropout=0.5"]
    ).config
    assert set(config.model) - {"name"} == set(models.config_fields(models.MODELS["fr"]))
    assert config.model.dropout == 0.5
    validation.check_config(config)


def test_build_settings_are_what_the_build_metadata_gives():
    metadata = {"crop_size": 48, "action_units": list(range(7)), "grid": 8, "window": 9}
    for model_class in models.MODELS.values():
        settings = model_class.settings_from_build(metadata)
        assert set(settings) == set(model_class.BUILD_SETTINGS)
    expected = {"crop_size": 48, "num_action_units": 7}
    assert models.MODELS["dere_grl"].settings_from_build(metadata) == expected
