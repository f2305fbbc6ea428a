"""MER datasets as TFDS builders (array_record, no TensorFlow), and how to build and read them.

    builder = data_builders.build("synthetic_me", data_dir="~/mer_data",
                                  overrides={"num_subjects": 4, "crop_size": 64})
    examples = data_builders.load_examples(builder)   # dict of stacked numpy arrays

    builder = data_builders.build("casme2", data_dir="~/mer_data", manual_dir="~/CASME2")
    release = data_builders.read_release("samm", "~/SAMM")   # records only, no pixels

A build is cached under data_dir and reused. `overrides` change config fields; the
overridden config gets a name derived from them (e.g.
"default-crop_size_64-num_subjects_4"), so each variant has its own cache directory.
Licensed databases (casme2, samm, smic, casme3, mmew, megc2019) are read from the
user's release folder (`manual_dir`); `python -m data_builders.build NAME --manual_dir
DIR --dry_run` checks one before a long build.
"""

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_builders import casme2, casme3, megc2019, mmew, samm, smic, synthetic_me
from data_builders.clip_builder import ClipBuilderConfig, ClipDatasetBuilder, ReleaseBuilder
from data_builders.records import ReleaseRecords
from mer_jax.errors import UserError

BUILDERS: dict[str, type[ClipDatasetBuilder]] = {
    "synthetic_me": synthetic_me.Builder,
    "casme2": casme2.Builder,
    "samm": samm.Builder,
    "smic": smic.Builder,
    "casme3": casme3.Builder,
    "mmew": mmew.Builder,
    "megc2019": megc2019.Builder,
}

# Fields of tfds.core.BuilderConfig itself (name, version, ...): not overridable.
_TFDS_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(tfds.core.BuilderConfig))
# Override values become part of a directory name.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.+-]+")


def _builder_class(name: str) -> type[ClipDatasetBuilder]:
    try:
        return BUILDERS[name]
    except KeyError:
        raise UserError(
            f"unknown dataset builder {name!r}; known builders: {', '.join(sorted(BUILDERS))}"
        ) from None


def _resolve_config(
    builder_class: type[ClipDatasetBuilder], config: str | None, overrides: dict[str, Any] | None
) -> ClipBuilderConfig:
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
    data_dir: str | Path,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    workers: int | None = None,
) -> ClipDatasetBuilder:
    """The builder of a registered dataset and config variant, without building it.

    Args:
        name: a key of `BUILDERS`.
        data_dir: root of the built datasets (and of their downloads/ cache).
        config: builder config name; default: the builder's first config.
        overrides: config fields to change, e.g. {"num_subjects": 4, "crop_size": 64}.
        workers: processes computing clip features (default: all cores).

    Raises:
        UserError: unknown builder, config or override key, or a wrong override type;
            the message lists the valid ones.
    """
    builder_class = _builder_class(name)
    return builder_class(
        data_dir=Path(data_dir).expanduser(),
        config=_resolve_config(builder_class, config, overrides),
        file_format="array_record",
        workers=workers,
    )


def build(
    name: str,
    *,
    data_dir: str | Path,
    manual_dir: str | Path | None = None,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    workers: int | None = None,
) -> ClipDatasetBuilder:
    """Builds a dataset unless a complete build is already in data_dir; returns its builder.

    Clip features are computed in spawned worker processes, which re-import the
    calling script: a script that builds must guard its entry point with
    `if __name__ == "__main__":`.

    Args:
        name, data_dir, config, overrides, workers: as in `get_builder`.
        manual_dir: the raw release directory, for builders of licensed databases.

    Raises:
        UserError: as in `get_builder`, or a problem with the raw data (the message
            names the file, sheet row or clip).
    """
    builder = get_builder(
        name, data_dir=data_dir, config=config, overrides=overrides, workers=workers
    )
    if not builder.is_prepared():
        if isinstance(builder, ReleaseBuilder):
            _check_manual_dir(builder, manual_dir)
        download_config = tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else Path(manual_dir).expanduser()
        )
        builder.download_and_prepare(download_config=download_config)
    return builder


def _check_manual_dir(builder: ReleaseBuilder, manual_dir: str | Path | None) -> Path:
    """The release folder of a licensed database, or an error saying how to get one."""
    if manual_dir is None or not str(manual_dir).strip():
        raise UserError(
            f"dataset {builder.name} is built from its licensed release: give the release "
            f"folder as manual_dir (--manual_dir DIR, or --config.data.manual_dir=DIR).\n"
            f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    path = Path(manual_dir).expanduser()
    if not path.is_dir():
        raise UserError(
            f"manual_dir {path} for dataset {builder.name} is not a folder.\n"
            f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    return path


def read_release(
    name: str,
    manual_dir: str | Path | None,
    *,
    data_dir: str | Path | None = None,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> ReleaseRecords:
    """The records of a licensed release and the notes on its rows, without building.

    Reads the annotation and lists the frame folders only (no image is opened), so it
    takes seconds: the check to run before a long build.

    Args:
        name: a licensed database of `BUILDERS`.
        manual_dir: the release folder.
        data_dir, config, overrides: select the builder variant as in `get_builder`
            (e.g. config "cropped"); data_dir defaults to a temporary folder (unused).

    Raises:
        UserError: not a licensed database, no such folder, or what the reader raises
            (missing annotation, wrong layout, malformed row: file and row named).
    """
    if not issubclass(_builder_class(name), ReleaseBuilder):
        raise UserError(
            f"dataset {name} is generated, not read from a release: there is nothing to check"
        )
    builder = get_builder(
        name,
        data_dir=data_dir or Path(tempfile.gettempdir()) / "mer_jax_dry_run",
        config=config,
        overrides=overrides,
    )
    assert isinstance(builder, ReleaseBuilder)
    return builder.read_release(_check_manual_dir(builder, manual_dir))


def load_examples(
    builder_or_name: ClipDatasetBuilder | str,
    data_dir: str | Path | None = None,
    *,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    split: str = "train",
) -> dict[str, np.ndarray]:
    """Reads a whole built split into stacked numpy arrays, sorted by sample_id.

    Args:
        builder_or_name: a builder (from `build`) or a registered name; with a name,
            data_dir, config and overrides select the build as in `get_builder`.
        split: the split to read.

    Returns:
        feature name -> array with one leading sample axis; Text features are str arrays.

    Raises:
        UserError: the dataset is not built there yet.
    """
    if isinstance(builder_or_name, str):
        if data_dir is None:
            raise UserError(
                f"load_examples({builder_or_name!r}) needs the data_dir it was built in"
            )
        builder = get_builder(
            builder_or_name, data_dir=data_dir, config=config, overrides=overrides
        )
    else:
        builder = builder_or_name
    if not builder.is_prepared():
        variant = f"{builder.name}/{builder.builder_config.name}"
        raise UserError(
            f"{variant} is not built in {builder.data_dir_root}; run data_builders.build(...) first"
        )
    source = builder.as_data_source(split=split)
    examples = [source[index] for index in range(len(source))]
    if not examples:
        raise UserError(f"{builder.name} split {split!r} in {builder.data_dir} is empty")
    examples.sort(key=lambda example: example["sample_id"])
    arrays = {}
    for key, feature in builder.info.features.items():
        values = [example[key] for example in examples]
        if isinstance(feature, tfds.features.Text):
            arrays[key] = np.array([value.decode() for value in values])
        else:
            # Scalars come back as Python numbers: restore the declared dtype.
            arrays[key] = np.asarray(np.stack(values), dtype=feature.np_dtype)
    return arrays
