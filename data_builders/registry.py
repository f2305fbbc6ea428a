"""The registered datasets, and how a name, a config and overrides pick one build.

`BUILDERS` maps every dataset name to its TFDS builder class. Each class declares its
`KIND`: "clips" (a labelled micro-expression dataset, one example per clip), "pairs"
(a macro-expression frame-pair corpus for MA2MI pre-training, one example per pair) or
"videos" (long recordings with their expression intervals, for spotting).

A build lives under a data_dir (default: `default_data_dir()`), one folder per builder
config. `overrides` change config fields; the overridden config gets a name derived
from them (e.g. "default-crop_size_64-num_subjects_4"), so each variant has its own
cache folder and a build made with the defaults is shared by every caller. A user's
errata change the data too: a build with them is named after their digest
("raw-errata_1a2b3c4d").
"""

import dataclasses
import re
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from data_builders import (
    casme2,
    casme3,
    casme3_lv,
    casme3_macro,
    casme_sq,
    ckplus,
    megc2019,
    mmew,
    samm,
    samm_lv,
    smic,
    synthetic_lv,
    synthetic_macro,
    synthetic_me,
    video_folder,
)
from data_builders.base import ReadOptions
from data_builders.clip_builder import ClipDatasetBuilder
from data_builders.errata import errata_digest
from data_builders.long_video_builder import LongVideoBuilder
from data_builders.macro_pairs import MacroPairsBuilder
from mer_jax.data.dataset import default_data_dir
from mer_jax.errors import UserError

AnyBuilder = ClipDatasetBuilder | MacroPairsBuilder | synthetic_lv.Builder | LongVideoBuilder
BUILDERS: dict[str, type[AnyBuilder]] = {
    "synthetic_me": synthetic_me.Builder,
    "casme2": casme2.Builder,
    "samm": samm.Builder,
    "smic": smic.Builder,
    "casme3": casme3.Builder,
    "mmew": mmew.Builder,
    "megc2019": megc2019.Builder,
    "synthetic_macro": synthetic_macro.Builder,
    "casme3_macro": casme3_macro.Builder,
    "ckplus": ckplus.Builder,
    "video_folder": video_folder.Builder,
    "synthetic_lv": synthetic_lv.Builder,
    "casme_sq": casme_sq.Builder,
    "samm_lv": samm_lv.Builder,
    "casme3_lv": casme3_lv.Builder,
}
KINDS = ("clips", "pairs", "videos")

# Fields of tfds.core.BuilderConfig itself (name, version, ...): not overridable.
_TFDS_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(tfds.core.BuilderConfig))
# Override values become part of a directory name.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.+-]+")


def builder_names(kind: str) -> list[str]:
    """The registered names of one kind ("clips" or "pairs"), in registry order."""
    return [name for name, builder_class in BUILDERS.items() if builder_class.KIND == kind]


def builder_class(name: str) -> type[AnyBuilder]:
    """The builder class of a registered name.

    Raises:
        UserError: unknown name; the message lists the known ones of each kind.
    """
    if name not in BUILDERS:
        raise UserError(
            f"unknown dataset builder {name!r}; known builders: "
            f"{', '.join(sorted(builder_names('clips')))}; macro-expression pair corpora: "
            f"{', '.join(sorted(builder_names('pairs')))}; long videos: "
            f"{', '.join(sorted(builder_names('videos')))}"
        )
    return BUILDERS[name]


def _resolve_config(
    builder_class: type[AnyBuilder], config: str | None, overrides: dict[str, Any] | None
) -> tfds.core.BuilderConfig:
    configs = builder_class.builder_configs
    base_name = config or builder_class.BUILDER_CONFIGS[0].name
    if base_name not in configs:
        raise UserError(
            f"dataset {builder_class.name} has no config {base_name!r}; "
            f"known configs: {', '.join(sorted(configs))}"
        )
    base = configs[base_name]
    overridable = sorted(
        field.name for field in dataclasses.fields(base) if field.name not in _TFDS_CONFIG_FIELDS
    )
    changed = {}
    for key, value in sorted((overrides or {}).items()):
        if key not in overridable:
            raise UserError(
                f"unknown override {key!r} for dataset {builder_class.name}; "
                f"valid keys: {', '.join(overridable)}"
            )
        default = getattr(base, key)
        if type(value) is not type(default) or not _SAFE_VALUE.fullmatch(str(value)):
            raise UserError(
                f"override {key}={value!r} for dataset {builder_class.name}: expected "
                f"{type(default).__name__} (like the default {default!r})"
            )
        if value != default:
            changed[key] = value
    if not changed:
        return base
    name = "-".join([base.name] + [f"{key}_{value}" for key, value in changed.items()])
    return dataclasses.replace(
        base, name=name, description=f"{base.name} with {changed}", **changed
    )


def get_builder(
    name: str,
    *,
    data_dir: str | Path | None = None,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    workers: int | None = None,
    reading: ReadOptions | None = None,
) -> AnyBuilder:
    """The builder of a registered dataset and config variant, without building it.

    Args:
        name: a key of `BUILDERS`.
        data_dir: root of the built datasets (and of their downloads/ cache); None:
            `default_data_dir()`.
        config: builder config name; default: the builder's first config.
        overrides: config fields to change, e.g. {"num_subjects": 4, "crop_size": 64}.
        workers: processes computing clip features or pairs (default: all cores).
        reading: how a user's folder is read: strict, errata, a chosen annotation.

    Raises:
        UserError: unknown builder, config or override key, or a wrong override type;
            the message lists the valid ones. Errata or an annotation for a builder that
            reads none.
    """
    found = builder_class(name)
    resolved = _resolve_config(found, config, overrides)
    if reading is not None and reading.errata:
        digest = errata_digest(reading.errata)
        resolved = dataclasses.replace(
            resolved,
            name=f"{resolved.name}-errata_{digest}",
            description=f"{resolved.description} with errata {digest}",
        )
    return found(
        data_dir=Path(default_data_dir() if data_dir is None else data_dir).expanduser(),
        config=resolved,
        file_format="array_record",
        workers=workers,
        reading=reading,
    )
