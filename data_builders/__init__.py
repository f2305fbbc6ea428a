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

Macro-expression corpora for MA2MI pre-training (`MACRO_BUILDERS`: synthetic_macro,
casme3_macro, ckplus, video_folder) hold one example per frame pair (I_t, I_{t+k})
(see `data_builders.macro_pairs`); they are built, cached and overridden the same way:

    builder = data_builders.build("synthetic_macro", data_dir="~/mer_data",
                                  overrides={"num_subjects": 4, "pair_size": 48})
    source = data_builders.pair_source(builder)   # len / [i]: for grain.MapDataset.source
    data_builders.macro_corpus_bytes(builder)     # frame bytes, without reading them
"""

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_builders import (
    casme2,
    casme3,
    casme3_macro,
    ckplus,
    megc2019,
    mmew,
    samm,
    smic,
    synthetic_macro,
    synthetic_me,
    video_folder,
)
from data_builders.clip_builder import ClipDatasetBuilder, ReleaseBuilder
from data_builders.macro_pairs import (
    MacroPairsBuilder,
    MacroRelease,
    MacroReleaseBuilder,
    PairSource,
    corpus_bytes,
)
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
# Frame-pair corpora of macro-expressions, for MA2MI pre-training.
MACRO_BUILDERS: dict[str, type[MacroPairsBuilder]] = {
    "synthetic_macro": synthetic_macro.Builder,
    "casme3_macro": casme3_macro.Builder,
    "ckplus": ckplus.Builder,
    "video_folder": video_folder.Builder,
}
AnyBuilder = ClipDatasetBuilder | MacroPairsBuilder

# Fields of tfds.core.BuilderConfig itself (name, version, ...): not overridable.
_TFDS_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(tfds.core.BuilderConfig))
# Override values become part of a directory name.
_SAFE_VALUE = re.compile(r"[A-Za-z0-9_.+-]+")


def _builder_class(name: str) -> type[AnyBuilder]:
    if name in BUILDERS:
        return BUILDERS[name]
    if name in MACRO_BUILDERS:
        return MACRO_BUILDERS[name]
    raise UserError(
        f"unknown dataset builder {name!r}; known builders: {', '.join(sorted(BUILDERS))}; "
        f"macro-expression pair corpora: {', '.join(sorted(MACRO_BUILDERS))}"
    )


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
    data_dir: str | Path,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    workers: int | None = None,
) -> AnyBuilder:
    """The builder of a registered dataset and config variant, without building it.

    Args:
        name: a key of `BUILDERS` or `MACRO_BUILDERS`.
        data_dir: root of the built datasets (and of their downloads/ cache).
        config: builder config name; default: the builder's first config.
        overrides: config fields to change, e.g. {"num_subjects": 4, "crop_size": 64}.
        workers: processes computing clip features or pairs (default: all cores).

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
) -> AnyBuilder:
    """Builds a dataset unless a complete build is already in data_dir; returns its builder.

    Clip features are computed in spawned worker processes, which re-import the
    calling script: a script that builds must guard its entry point with
    `if __name__ == "__main__":`.

    Args:
        name, data_dir, config, overrides, workers: as in `get_builder`.
        manual_dir: the raw release directory, for builders of licensed databases (and
            the folder of a macro corpus read from disk: casme3_macro, ckplus,
            video_folder).

    Raises:
        UserError: as in `get_builder`, or a problem with the raw data (the message
            names the file, sheet row or clip).
    """
    builder = get_builder(
        name, data_dir=data_dir, config=config, overrides=overrides, workers=workers
    )
    if not builder.is_prepared():
        if isinstance(builder, ReleaseBuilder | MacroReleaseBuilder):
            _check_manual_dir(builder, manual_dir)
        download_config = tfds.download.DownloadConfig(
            manual_dir=None if manual_dir is None else Path(manual_dir).expanduser()
        )
        builder.download_and_prepare(download_config=download_config)
    return builder


def _check_manual_dir(
    builder: ReleaseBuilder | MacroReleaseBuilder, manual_dir: str | Path | None
) -> Path:
    """The release folder of a licensed database (or the folder of a macro corpus read
    from disk), or an error saying how to get one."""
    if manual_dir is None or not str(manual_dir).strip():
        what = "its licensed release" if isinstance(builder, ReleaseBuilder) else "a folder"
        raise UserError(
            f"dataset {builder.name} is built from {what}: give the release "
            f"folder as manual_dir (--manual_dir DIR, or --config.data.manual_dir=DIR).\n"
            f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    path = Path(manual_dir).expanduser()
    if not path.is_dir():
        raise UserError(
            f"manual_dir {path} for dataset {builder.name} is not a folder.\n"
            f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    if isinstance(builder, MacroReleaseBuilder) and not any(path.iterdir()):
        raise UserError(
            f"manual_dir {path} for dataset {builder.name} is empty.\n"
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
    if issubclass(_builder_class(name), MacroReleaseBuilder):
        raise UserError(
            f"dataset {name} is a macro-expression pair corpus: read it with "
            "data_builders.read_macro_release"
        )
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


def read_macro_release(
    name: str,
    manual_dir: str | Path | None,
    *,
    data_dir: str | Path | None = None,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> MacroRelease:
    """The clips of a macro corpus read from disk, without building (its dry run).

    Lists the folders and reads the annotation (videos: their container header and
    first frame only).

    Args:
        name: a macro builder read from disk (casme3_macro, ckplus, video_folder).
        manual_dir: its folder.
        data_dir, config, overrides: select the builder variant as in `get_builder`
            (e.g. {"dataset_name": "lab"} for video_folder).

    Raises:
        UserError: not such a builder, no such folder, or what its reader raises.
    """
    if not issubclass(_builder_class(name), MacroReleaseBuilder):
        raise UserError(f"dataset {name} is not a macro corpus read from a folder")
    builder = get_builder(
        name,
        data_dir=data_dir or Path(tempfile.gettempdir()) / "mer_jax_dry_run",
        config=config,
        overrides=overrides,
    )
    assert isinstance(builder, MacroReleaseBuilder)
    return builder.read_clips(_check_manual_dir(builder, manual_dir))


def _prepared(
    builder_or_name: AnyBuilder | str,
    data_dir: str | Path | None,
    config: str | None,
    overrides: dict[str, Any] | None,
    caller: str,
) -> AnyBuilder:
    """The builder of a complete build, or an error saying it is not built."""
    if isinstance(builder_or_name, str):
        if data_dir is None:
            raise UserError(f"{caller}({builder_or_name!r}) needs the data_dir it was built in")
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
    return builder


def _macro(builder: AnyBuilder, caller: str) -> MacroPairsBuilder:
    if not isinstance(builder, MacroPairsBuilder):
        raise UserError(
            f"{caller} reads macro-expression pair corpora ({', '.join(MACRO_BUILDERS)}); "
            f"{builder.name} is a clip dataset"
        )
    return builder


def pair_source(
    builder_or_name: MacroPairsBuilder | str,
    data_dir: str | Path | None = None,
    *,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    split: str = "train",
) -> PairSource:
    """Random access to the pairs of a built macro corpus, read from its files on demand.

    `len(source)` pairs; `source[i]` is a dict of numpy values (the features of
    `data_builders.macro_pairs.features_dict`: text as np.str_, t/k/fps 0-d arrays,
    frame_t and frame_t_plus_k uint8 (P, P, 3)). Made for
    `grain.MapDataset.source(source)`.

    Args:
        builder_or_name, data_dir, config, overrides: as in `load_examples`.
        split: the split to read.

    Raises:
        UserError: not built there yet, or not a macro corpus.
    """
    builder = _prepared(builder_or_name, data_dir, config, overrides, "pair_source")
    return PairSource(_macro(builder, "pair_source"), split)


def macro_corpus_bytes(builder: MacroPairsBuilder) -> int:
    """Bytes of frame_t + frame_t_plus_k over every pair of a built macro corpus.

    From the build's info (pair count and feature shapes); nothing is read, so a
    pre-training run can decide between a device-resident corpus and streaming.

    Raises:
        UserError: not built yet, or not a macro corpus.
    """
    return corpus_bytes(
        _macro(_prepared(builder, None, None, None, "macro_corpus_bytes"), "macro_corpus_bytes")
    )


def load_examples(
    builder_or_name: AnyBuilder | str,
    data_dir: str | Path | None = None,
    *,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    split: str = "train",
) -> dict[str, np.ndarray]:
    """Reads a whole built split into stacked numpy arrays, in a fixed order.

    Clip datasets are sorted by sample_id; macro pair corpora by (subject, clip, t).

    Args:
        builder_or_name: a builder (from `build`) or a registered name; with a name,
            data_dir, config and overrides select the build as in `get_builder`.
        split: the split to read.

    Returns:
        feature name -> array with one leading sample axis; Text features are str arrays.

    Raises:
        UserError: the dataset is not built there yet.
    """
    builder = _prepared(builder_or_name, data_dir, config, overrides, "load_examples")
    source = builder.as_data_source(split=split)
    examples = [source[index] for index in range(len(source))]
    if not examples:
        raise UserError(f"{builder.name} split {split!r} in {builder.data_dir} is empty")
    if isinstance(builder, MacroPairsBuilder):
        examples.sort(key=lambda e: (e["subject"], e["clip"], int(e["t"])))
    else:
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


def load(data_config: Any) -> Any:
    """INTERIM (replaced by the data_builders refactor): build on first use and read."""
    import ml_collections  # noqa: F401

    from mer_jax.data import protocols
    from mer_jax.data.dataset import MERDataset, PairCorpus

    if data_config.get("data_dir") is not None and not str(data_config.data_dir).strip():
        raise UserError("data.data_dir is empty")
    data_dir = data_config.get("data_dir") or os.environ.get(
        "MER_JAX_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "mer_jax", "datasets")
    )
    builder = build(
        data_config.name,
        data_dir=Path(data_dir).expanduser(),
        manual_dir=data_config.get("manual_dir"),
        config=data_config.get("builder_config"),
        overrides=dict(data_config.get("overrides") or {}),
    )
    if isinstance(builder, MacroPairsBuilder):
        return PairCorpus(
            name=data_config.name,
            metadata=dict(builder.info.metadata),
            source=pair_source(builder),
            frame_bytes=macro_corpus_bytes(builder),
            load_all=lambda: load_examples(builder),
        )
    examples = load_examples(builder)
    class_names = tuple(builder.info.metadata["class_names"])
    if data_config.get("protocol"):
        protocol = protocols.get_protocol(data_config.protocol)
        labels = [
            protocol.label_of(d, e)
            for d, e in zip(examples["dataset"], examples["emotion"], strict=True)
        ]
        examples["label"] = np.array([-1 if lab is None else lab for lab in labels], np.int64)
        class_names = tuple(protocol.class_names)
    keep = examples["label"] >= 0
    examples = {k: v[keep] for k, v in examples.items()}
    return MERDataset(data_config.name, class_names, examples, dict(builder.info.metadata))
