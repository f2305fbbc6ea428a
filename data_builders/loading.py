"""Building on first use, checking a release, and reading builds back.

`load(config.data)` is what a run calls: it builds the configured dataset unless a
complete build is cached, reads it and returns the `mer_jax.data.dataset` type of its
kind (`MERDataset` for clips, `PairCorpus` for pairs, `VideoCorpus` for long
videos); `check(config.data, kind)`
validates the same settings first, building nothing. The functions below them serve
scripts and tests: `build`, `dataset_from_build` (what `load` returns, from a build in
hand), `read_release` (the dry run), `load_examples`, `pair_source` and
`macro_corpus_bytes`.

A build runs under a lock in its cache folder: a second process (or host, on a shared
file system) wanting the same build waits for it and then reads it; a half-written
build is never read (TFDS renames a finished one into place), and what a killed build
left behind (TFDS's `incomplete.*` folders) is removed by the next.
"""

import dataclasses
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from data_builders.base import ManualDirBuilder, ReadOptions
from data_builders.errata import read_errata
from data_builders.macro_pairs import (
    MacroPairsBuilder,
    PairSource,
    corpus_bytes,
)
from data_builders.records import STRICT_RULE, Release
from data_builders.registry import (
    AnyBuilder,
    builder_class,
    builder_names,
    default_data_dir,
    get_builder,
)
from mer_jax.data.dataset import MERDataset, PairCorpus, Video, VideoCorpus
from mer_jax.data.protocols import get_protocol
from mer_jax.errors import UserError
from mer_jax.guards import FileLock, check_writable


def build(
    name: str,
    *,
    data_dir: str | Path | None = None,
    manual_dir: str | Path | None = None,
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    workers: int | None = None,
    reading: ReadOptions | None = None,
) -> AnyBuilder:
    """Builds a dataset unless a complete build is already in data_dir; returns its builder.

    Clip features are computed in spawned worker processes, which re-import the
    calling script: a script that builds must guard its entry point with
    `if __name__ == "__main__":`.

    Rows and clips of a user's folder that cannot be used are skipped and named (in the
    log and in the build's metadata: release_notes, skipped_clips); with
    `reading.strict` any of them fails the build, and a cached build that skipped some
    is refused.

    Args:
        name, data_dir, config, overrides, workers, reading: as in `get_builder`.
        manual_dir: the raw release directory, for builders of licensed databases (and
            the folder of a macro corpus read from disk: casme3_macro, ckplus,
            video_folder).

    Raises:
        UserError: as in `get_builder`, a problem with the raw data as a whole (the
            message names the file), every clip failing, or (strict) anything skipped.
    """
    def variant() -> AnyBuilder:
        return get_builder(
            name,
            data_dir=data_dir,
            config=config,
            overrides=overrides,
            workers=workers,
            reading=reading,
        )

    builder = variant()
    if builder.is_prepared():
        _check_strict(builder)
        return builder
    if isinstance(builder, ManualDirBuilder):
        check_manual_dir(builder, manual_dir)
    config_dir = Path(builder.data_dir).parent
    check_writable(config_dir, "data.data_dir")
    label = f"{builder.name}/{builder.builder_config.name}"
    with FileLock(config_dir / ".build.lock", f"the build of {label}", wait=True):
        # Another process may have finished this build while we waited for the lock.
        builder = variant()
        if builder.is_prepared():
            _check_strict(builder)
        else:
            # Under the lock no other build of this variant runs: what TFDS left in
            # `incomplete.*` folders comes from a build that was killed.
            for left in config_dir.glob("incomplete.*"):
                shutil.rmtree(left, ignore_errors=True)
            download_config = tfds.download.DownloadConfig(
                manual_dir=None if manual_dir is None else Path(manual_dir).expanduser()
            )
            builder.download_and_prepare(download_config=download_config)
    return builder


def _check_strict(builder: AnyBuilder) -> None:
    """A strict run refuses a cached build that skipped rows or clips."""
    skipped = skipped_in_build(builder) if builder.reading.strict else []
    if skipped:
        raise UserError(
            f"the cached build {builder.data_dir} skipped {len(skipped)} row(s) or "
            f"clip(s); {STRICT_RULE} (a changed release needs its old build deleted "
            "first):\n  " + "\n  ".join(skipped)
        )


def skipped_in_build(builder: AnyBuilder) -> list[str]:
    """The rows and clips a finished build skipped: its skipped release notes and the
    clips that could not be built."""
    metadata = builder.info.metadata
    notes = [note for note in metadata.get("release_notes", []) if note.startswith("skipped:")]
    return notes + list(metadata.get("skipped_clips", []))


def check_manual_dir(builder: ManualDirBuilder, manual_dir: str | Path | None) -> Path:
    """The folder a builder reads (a licensed release, a folder of videos), or an error
    saying how to get one.

    Raises:
        UserError: no folder given, not a folder, or (pair corpora) an empty one; the
            message quotes the builder's MANUAL_DOWNLOAD_INSTRUCTIONS.
    """
    if manual_dir is None or not str(manual_dir).strip():
        raise UserError(
            f"dataset {builder.name} is built from {builder.MANUAL_DIR_HOLDS}: give the release "
            f"folder as manual_dir (--manual_dir DIR, or --config.data.manual_dir=DIR).\n"
            f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    path = Path(manual_dir).expanduser()
    if not path.is_dir():
        raise UserError(
            f"manual_dir {path} for dataset {builder.name} is not a folder.\n"
            f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}"
        )
    if not any(path.iterdir()):
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
    reading: ReadOptions | None = None,
) -> Release:
    """The clips of a release read from a folder and the notes on it, without building.

    Reads the annotation and lists the frame folders only (no image is opened; videos:
    their container header and first frame), so it is quick: the check to run before a
    long build. Every problem of a row is a note of the release (`ReleaseRecords.notes`),
    so one reading lists them all; nothing here is strict (see `records.check_strict`).

    Args:
        name: a dataset read from manual_dir: a licensed database (casme2, samm, smic,
            casme3, mmew, megc2019), a licensed long-video database (casme_sq, samm_lv,
            casme3_lv) or a pair corpus read from a folder (casme3_macro, ckplus,
            video_folder).
        manual_dir: its folder.
        data_dir, config, overrides, reading: select the builder variant as in
            `get_builder` (e.g. config "cropped", or {"dataset_name": "lab"} for
            video_folder; the errata and chosen annotation of `reading`); data_dir
            defaults to a temporary folder (unused).

    Returns:
        a `ReleaseRecords` for a clip dataset, a `VideoRelease` for long videos, a
        `MacroRelease` for a pair corpus.

    Raises:
        UserError: not read from a folder, no such folder, or what the reader raises for
            the release as a whole (missing or ambiguous annotation, wrong layout).
    """
    if not issubclass(builder_class(name), ManualDirBuilder):
        raise UserError(
            f"dataset {name} is generated, not read from a release: there is nothing to check"
        )
    builder = get_builder(
        name,
        data_dir=data_dir or Path(tempfile.gettempdir()) / "mer_jax_dry_run",
        config=config,
        overrides=overrides,
        reading=reading,
    )
    assert isinstance(builder, ManualDirBuilder)
    return builder.checked_release(check_manual_dir(builder, manual_dir))


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
            f"{caller} reads macro-expression pair corpora ({', '.join(builder_names('pairs'))}); "
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

    Clip datasets are sorted by sample_id; macro pair corpora by (subject, clip, t); long
    videos by name (their arrays differ in length from video to video: one object array
    per ragged feature).

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
    elif builder.KIND == "videos":
        examples.sort(key=lambda example: example["video"])
    else:
        examples.sort(key=lambda example: example["sample_id"])
    arrays = {}
    for key, feature in builder.info.features.items():
        values = [example[key] for example in examples]
        if isinstance(feature, tfds.features.Text):
            arrays[key] = np.array([value.decode() for value in values])
        elif builder.KIND == "videos" and not isinstance(feature, tfds.features.Scalar):
            ragged = np.empty(len(values), object)
            ragged[:] = [_decoded(value, feature) for value in values]
            arrays[key] = ragged
        else:
            # Scalars come back as Python numbers: restore the declared dtype.
            arrays[key] = np.asarray(np.stack(values), dtype=feature.np_dtype)
    return arrays


def _decoded(value: Any, feature: tfds.features.FeatureConnector) -> np.ndarray:
    """One video's ragged feature: text sequences as str arrays, tensors in their dtype."""
    if isinstance(feature, tfds.features.Sequence):
        return np.array([item.decode() for item in value], dtype=str)
    return np.asarray(value, dtype=feature.np_dtype)


def _data_dir(data_config: ml_collections.ConfigDict) -> Path:
    """data.data_dir as a folder path; None or absent: the default cache."""
    data_dir = data_config.get("data_dir")
    if data_dir is None:
        data_dir = default_data_dir()
    if not str(data_dir).strip():
        raise UserError(
            "data.data_dir is empty; give the folder where built datasets are cached, e.g. "
            f"--config.data.data_dir={default_data_dir()} (the default)."
        )
    path = Path(data_dir).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"data.data_dir {path} is a file, not a folder; give a folder.")
    return path


def _reading(data_config: ml_collections.ConfigDict) -> ReadOptions:
    """How a release is read: `data.strict`, and `data.errata` (a user's errata CSV)."""
    errata = data_config.get("errata")
    return ReadOptions(
        strict=bool(data_config.get("strict", False)),
        errata=read_errata(errata) if errata else (),
    )


def check(data_config: ml_collections.ConfigDict, kind: str) -> None:
    """Checks `config.data` without building or reading anything: a known builder of the
    run's `kind` ("clips" for LOSO, "pairs" for pre-training, "videos" for spotting), its
    builder config and overrides, the data_dir, and, when the build is not cached yet, a
    writable data_dir and the release folder it would be built from.

    Raises:
        UserError: the first problem, naming the field and what is accepted.
    """
    name = data_config.get("name")
    if builder_class(name).KIND != kind:
        raise UserError(
            f"data.name={name!r} is a {builder_class(name).KIND!r} dataset; this task needs "
            f"{kind!r}: {', '.join(builder_names(kind))}."
        )
    if kind in ("pairs", "videos") and data_config.get("protocol"):
        what = "a macro-expression pair corpus" if kind == "pairs" else "a long-video database"
        raise UserError(
            f"data.protocol={data_config.protocol!r} is set, but {name!r} is {what}, "
            "which has no clip labels; unset data.protocol."
        )
    data_dir = _data_dir(data_config)
    builder = get_builder(
        name,
        data_dir=data_dir,
        config=data_config.get("builder_config"),
        overrides=dict(data_config.get("overrides") or {}),
        reading=_reading(data_config),
    )
    if not builder.is_prepared():
        check_writable(data_dir, "data.data_dir")
        if isinstance(builder, ManualDirBuilder):
            check_manual_dir(builder, data_config.get("manual_dir"))


def load(data_config: ml_collections.ConfigDict) -> MERDataset | PairCorpus | VideoCorpus:
    """Builds the configured dataset on first use (cached in data_dir) and reads it.

    Reads `name`, `data_dir` (None or absent: `default_data_dir()`), `manual_dir`,
    `builder_config`, `overrides`, `protocol`, `strict` and `errata` (a user's errata
    CSV, see `data_builders.errata`) of `config.data`.

    A clip dataset comes back as a `MERDataset` of every sample with a label: samples
    the protocol excludes (label -1, e.g. CASME II fear/sadness in the 5-class protocol)
    are dropped, and with `data.protocol` set the labels are first re-derived from the
    raw emotion strings with that protocol's label map. A pair corpus comes back as a
    `PairCorpus`, its pairs read on demand; long videos as a `VideoCorpus`. All carry the
    build's metadata.

    Raises:
        UserError: an empty data_dir or one that is a file, what `build` raises, a
            protocol set for a pair corpus, or no labelled sample at all.
    """
    return dataset_from_build(build_configured(data_config), data_config.get("protocol"))


def build_configured(data_config: ml_collections.ConfigDict) -> AnyBuilder:
    """Builds the dataset `config.data` names unless it is cached, without reading it
    (`load` reads it next; a benchmark that times a run builds first, off the clock).

    Raises:
        UserError: as `check` and `build` raise.
    """
    name = data_config.get("name")
    check(data_config, builder_class(name).KIND)
    return build(
        name,
        data_dir=_data_dir(data_config),
        manual_dir=data_config.get("manual_dir"),
        config=data_config.get("builder_config"),
        overrides=dict(data_config.get("overrides") or {}),
        reading=_reading(data_config),
    )


def dataset_from_build(
    builder: AnyBuilder, protocol_name: str | None = None
) -> MERDataset | PairCorpus | VideoCorpus:
    """The dataset `load` returns, from a finished build: a `MERDataset` of the clips
    with a label under `protocol_name` (None: the build's own labels), a `PairCorpus`
    or a `VideoCorpus`.

    Raises:
        UserError: an unknown protocol, or no labelled sample at all.
    """
    name = builder.name
    # Which build this is (its config and the builder's version), so that a workdir's
    # dataset.json says what its figures were measured on.
    config = builder.builder_config.name if builder.builder_config else "default"
    build = f"{name}/{config}:{builder.info.version}"
    metadata = {**builder.info.metadata, "build": build}
    if isinstance(builder, MacroPairsBuilder):
        return PairCorpus(
            name=name,
            metadata=metadata,
            source=PairSource(builder),
            frame_bytes=macro_corpus_bytes(builder),
            load_all=functools.partial(load_examples, builder),
        )
    examples = load_examples(builder)
    if builder.KIND == "videos":
        fields = [field.name for field in dataclasses.fields(Video) if field.name != "name"]
        videos = tuple(
            Video(name=str(name), **{field: examples[field][i] for field in fields})
            for i, name in enumerate(examples["video"])
        )
        return VideoCorpus(name=name, videos=videos, metadata=metadata)
    class_names = tuple(metadata["class_names"])
    if protocol_name:
        protocol = get_protocol(protocol_name)
        labels = [
            protocol.label_of(str(d), str(e))
            for d, e in zip(examples["dataset"], examples["emotion"], strict=True)
        ]
        examples["label"] = np.array([-1 if lab is None else lab for lab in labels], np.int64)
        class_names = tuple(protocol.class_names)
    keep = examples["label"] >= 0
    examples = {k: v[keep] for k, v in examples.items()}
    if not keep.any():
        raise UserError(
            f"Dataset {name!r} has no sample with a label under its protocol; "
            "check data.protocol and the annotation's emotion column."
        )
    return MERDataset(name, class_names, examples, metadata)
