"""The TFDS builder base shared by every MER clip dataset, and what one example stores.

A concrete builder says where its clips come from (`_read_records`) and which
protocol labels them; this base turns each `ClipRecord` into one example: its identity
and labels, and the features `mer_jax.preprocess.clip_features` computes from its
frames, in parallel over clips (`data_builders.base.map_clips`). `features_dict` is the
storage schema the training code reads. Builders write array_record files and are read
without TensorFlow (`tfds.data_source` / `builder.as_data_source`).

TFDS writes a build into an `incomplete.*` directory and renames it when complete,
so an interrupted build is never mistaken for a finished one. A clip that fails (no
face found, unreadable frame) does not stop the others: see `MERBuilder.settle_failures`
for when the build skips it (named in the log and the metadata) and when it fails.

`ReleaseBuilder` is the base of the builders of licensed databases: their records come
from the release a user has in `manual_dir`, through a reader built on
`data_builders.reading`; a row whose emotion the builder's protocol does not know is
skipped with a note, like any other row problem.
"""

import abc
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from data_builders.base import (
    ManualDirBuilder,
    MERBuilder,
    clip_failure,
    keep_release_notes,
    map_clips,
)
from data_builders.reading import SheetReader, check_usable
from data_builders.records import ClipRecord, ReleaseRecords, RowNote
from mer_jax.data.action_units import AU_LIST, multi_hot, parse_action_units
from mer_jax.data.protocols import get_protocol, normalize_emotion
from mer_jax.errors import UserError
from mer_jax.preprocess import (
    BATCHED_FLOW_METHODS,
    NUM_LANDMARKS,
    ClipOptions,
    clip_features,
    onset_apex_flows,
)


@dataclasses.dataclass(eq=False)
class ClipBuilderConfig(tfds.core.BuilderConfig):
    """Builder config fields every clip dataset has (see `ClipOptions`, their defaults)."""

    crop_size: int = ClipOptions.crop_size
    flow_size: int = ClipOptions.flow_size
    flow_method: str = ClipOptions.flow_method
    num_frames: int = ClipOptions.num_frames
    frames_flow_method: str = ClipOptions.frames_flow_method

    def __post_init__(self) -> None:
        """Validates the clip options now rather than mid-build."""
        self.clip_options()

    def clip_options(self) -> ClipOptions:
        """The feature options of this config."""
        return ClipOptions(
            self.crop_size,
            self.flow_size,
            self.flow_method,
            self.num_frames,
            self.frames_flow_method,
        )


# Frame variants of releases that ship both raw frames and official face crops.
RELEASE_VARIANTS = ("raw", "cropped")


@dataclasses.dataclass(eq=False)
class ReleaseVariantConfig(ClipBuilderConfig):
    """A clip config that also picks the frames of a release: "raw" or "cropped".

    Raw frames go through our face stage (dlib on the onset, one alignment per clip);
    the official crops are only resized.
    """

    release: str = "raw"

    def __post_init__(self) -> None:
        """Rejects an unknown release variant now rather than mid-build."""
        if self.release not in RELEASE_VARIANTS:
            raise UserError(f"release {self.release!r} is not one of {', '.join(RELEASE_VARIANTS)}")
        super().__post_init__()


def features_dict(options: ClipOptions) -> tfds.features.FeaturesDict:
    """The TFDS features of a built example (the contract the training engine reads)."""
    crop = (options.crop_size, options.crop_size, 3)
    flow = (options.flow_size, options.flow_size)
    text = tfds.features.Text
    frames = {}
    if options.num_frames:
        stored = (options.num_frames,)
        frames = {
            "frame_indices": tfds.features.Tensor(
                shape=stored, dtype=np.int32, doc="original numbers, onset first, offset last"
            ),
            "frames": tfds.features.Tensor(shape=stored + crop, dtype=np.uint8),
            "landmarks_frames": tfds.features.Tensor(
                shape=stored + (NUM_LANDMARKS, 2), dtype=np.float32, doc="crop pixels"
            ),
            "flow_onset_to_t": tfds.features.Tensor(
                shape=stored + flow + (2,), dtype=np.float16, doc="[u, v], crop pixels"
            ),
            "flow_t_to_offset": tfds.features.Tensor(
                shape=stored + flow + (2,), dtype=np.float16, doc="[u, v], crop pixels"
            ),
            "strain_onset_to_t": tfds.features.Tensor(shape=stored + flow + (1,), dtype=np.float16),
            "strain_t_to_offset": tfds.features.Tensor(
                shape=stored + flow + (1,), dtype=np.float16
            ),
        }
    return tfds.features.FeaturesDict(
        {
            "sample_id": text(doc="dataset/subject folder/filename/onset"),
            "dataset": text(),
            "subject": text(doc="namespaced: dataset/subject folder"),
            "filename": text(),
            "emotion": text(doc="as written in the coding sheet"),
            "label": tfds.features.Scalar(np.int64, doc="protocol class, -1 if excluded"),
            "action_units_raw": text(),
            "action_units": tfds.features.Tensor(
                shape=(len(AU_LIST),), dtype=np.uint8, doc=f"multi-hot over AUs {AU_LIST}"
            ),
            "action_units_known": tfds.features.Scalar(
                np.uint8,
                doc="1: action_units is the AU cell read completely; 0: not coded or not "
                "readable (all zero; AU losses mask the clip)",
            ),
            "fps": tfds.features.Scalar(np.float32),
            "onset_index": tfds.features.Scalar(np.int32, doc="original frame number"),
            "apex_index": tfds.features.Scalar(np.int32, doc="original frame number"),
            "offset_index": tfds.features.Scalar(np.int32, doc="original frame number"),
            "apex_annotated": tfds.features.Scalar(np.bool_),
            "onset_image": tfds.features.Tensor(shape=crop, dtype=np.uint8),
            "apex_image": tfds.features.Tensor(shape=crop, dtype=np.uint8),
            "offset_image": tfds.features.Tensor(shape=crop, dtype=np.uint8),
            "flow": tfds.features.Tensor(
                shape=flow + (2,), dtype=np.float16, doc="[u, v] onset->apex, crop pixels"
            ),
            "strain": tfds.features.Tensor(shape=flow + (1,), dtype=np.float16),
            "landmarks_onset": tfds.features.Tensor(
                shape=(NUM_LANDMARKS, 2), dtype=np.float32, doc="(x, y) in crop pixels"
            ),
            "landmarks_apex": tfds.features.Tensor(shape=(NUM_LANDMARKS, 2), dtype=np.float32),
            **frames,
        }
    )


def clip_example(
    record: ClipRecord, options: ClipOptions, label: int, with_flow: bool = True
) -> dict[str, object]:
    """The feature dict of one clip (keys and dtypes of `features_dict`).

    Args:
        record: the clip.
        options: crop and flow settings.
        label: the protocol class of the clip's emotion, -1 if the protocol excludes it.
        with_flow: False leaves "flow" and "strain" out, for `with_onset_apex_flows`.

    Raises:
        UserError: the clip cannot be processed (unreadable frame, no face found); the
            message names the clip.
    """
    features = clip_features(record.frames(), options, with_flow)
    action_units = parse_action_units(record.action_units_raw)
    return {
        "sample_id": record.sample_id,
        "dataset": record.dataset,
        "subject": record.subject,
        "filename": record.filename,
        "emotion": record.emotion,
        "label": np.int64(label),
        "action_units_raw": record.action_units_raw,
        "action_units": multi_hot(action_units.units),
        "action_units_known": np.uint8(action_units.known),
        "fps": np.float32(record.fps),
        "onset_index": np.int32(record.onset),
        "apex_index": np.int32(record.apex),
        "offset_index": np.int32(record.offset),
        "apex_annotated": np.bool_(record.apex_annotated),
        **features,
    }


def with_onset_apex_flows(
    examples: list[dict[str, object]], options: ClipOptions
) -> list[dict[str, object]]:
    """`examples` made without their flow, with their "flow" and "strain" solved in one
    batch (`mer_jax.preprocess.onset_apex_flows`)."""
    flows = onset_apex_flows(
        np.stack([example["onset_image"] for example in examples]),
        np.stack([example["apex_image"] for example in examples]),
        options,
    )
    return [
        {**example, "flow": flow, "strain": strain}
        for example, (flow, strain) in zip(examples, flows, strict=True)
    ]


class ClipDatasetBuilder(MERBuilder):
    """Base of the MER clip dataset builders: one "train" split of every clip.

    Clips the protocol excludes are kept, with label -1, so a build serves several
    protocols; folds (LOSO, LODO) are made downstream.

    With a `flow_method` of `BATCHED_FLOW_METHODS` ("tvl1_jax") the worker processes
    decode and align the clips and this process solves their onset -> apex flows on the
    accelerator, `FLOW_BATCH` clips at a time.
    """

    KIND: ClassVar[str] = "clips"  # what `data_builders.load` returns: a MERDataset
    PROTOCOL: ClassVar[str]  # name of the protocol in mer_jax.data.protocols
    # Clips whose flows are solved in one program: enough to fill a device, few enough
    # that the batch (which iterates until its slowest pair has converged) wastes little.
    FLOW_BATCH: ClassVar[int] = 64

    @abc.abstractmethod
    def _read_records(self, dl_manager: tfds.download.DownloadManager) -> list[ClipRecord]:
        """The clips of the database (generating or locating the raw data as needed)."""

    def _info(self) -> tfds.core.DatasetInfo:
        protocol = get_protocol(self.PROTOCOL)
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=features_dict(config.clip_options()),
            metadata=tfds.core.MetadataDict(
                protocol=protocol.name,
                class_names=list(protocol.class_names),
                action_units=list(AU_LIST),
                crop_size=config.crop_size,
                flow_size=config.flow_size,
                flow_method=config.flow_method,
                num_frames=config.num_frames,
                frames_flow_method=config.frames_flow_method,
                # Filled in by the build:
                release_notes=[],
                skipped_clips=[],
            ),
        )

    def _split_generators(
        self, dl_manager: tfds.download.DownloadManager
    ) -> dict[str, Iterator[tuple[str, dict[str, object]]]]:
        records = self._read_records(dl_manager)
        protocol = get_protocol(self.PROTOCOL)
        # Labels first: an unknown emotion fails the build before any clip is computed
        # (a generated database's bug; a release builder has skipped such rows already).
        labels = []
        for record in records:
            try:
                label = protocol.label_of(record.dataset, record.emotion)
            except UserError as error:
                raise UserError(f"clip {record.sample_id}: {error}") from None
            labels.append(-1 if label is None else label)
        return {"train": self._generate_examples(records, labels)}

    def _generate_examples(
        self, records: list[ClipRecord], labels: list[int]
    ) -> Iterator[tuple[str, dict[str, object]]]:
        options = self.builder_config.clip_options()
        batched = options.flow_method in BATCHED_FLOW_METHODS
        failures: list[RowNote] = []
        calls = [
            (record, options, label, not batched)
            for record, label in zip(records, labels, strict=True)
        ]
        waiting: list[dict[str, object]] = []
        flow_bar = tqdm(
            total=len(records),
            desc=f"{self.name} {options.flow_method} flows",
            unit="clip",
            disable=not batched,
        )
        for index, example, error in map_clips(
            clip_example, calls, workers=self._workers, desc=f"{self.name} clip features"
        ):
            if error is not None:
                record = records[index]
                clip = f"{record.subject_folder}/{record.filename}"
                failures.append(clip_failure(record, clip, error))
                continue
            if not batched:
                yield example["sample_id"], example
                continue
            waiting.append(example)
            if len(waiting) == self.FLOW_BATCH:
                yield from self._solved(waiting, options, flow_bar)
                waiting = []
        if waiting:
            yield from self._solved(waiting, options, flow_bar)
        flow_bar.close()
        self.settle_failures(failures, len(records))


    @staticmethod
    def _solved(
        waiting: list[dict[str, object]], options: ClipOptions, flow_bar: tqdm
    ) -> Iterator[tuple[str, dict[str, object]]]:
        for done in with_onset_apex_flows(waiting, options):
            yield done["sample_id"], done
        flow_bar.update(len(waiting))


class ReleaseBuilder(ManualDirBuilder, ClipDatasetBuilder):
    """Base of the builders of licensed databases, read from the user's `manual_dir`.

    A subclass sets `MANUAL_DOWNLOAD_INSTRUCTIONS` and `DATASETS` and implements
    `read_release` (see `data_builders.base.ManualDirBuilder`), applying `errata_for`
    each database it reads. Rows the reader skipped or fixed are logged during the build
    and kept in the built dataset's metadata ("release_notes").
    """

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Initial release.",
        "1.1.0": "action_units_known; all stored landmarks from one pipeline; skipped rows "
        "and clips reported instead of failing the build.",
    }
    MANUAL_DIR_HOLDS = "its licensed release"
    APPLIES_ERRATA = True
    READS_ANNOTATION = True

    def checked_release(self, manual_dir: Path) -> ReleaseRecords:
        """The release, with a note for each user erratum about another database and
        the rows whose emotion the builder's protocol does not know skipped (noted)."""
        release = self.read_release(manual_dir)
        assert isinstance(release, ReleaseRecords)
        notes = list(self.foreign_errata_notes())
        protocol = get_protocol(self.PROTOCOL)
        records = []
        for record in release.records:
            vocabulary = protocol.vocabularies.get(record.dataset, {})
            if normalize_emotion(record.emotion) in vocabulary:
                records.append(record)
                continue
            notes.append(
                RowNote(
                    "skipped",
                    record.where,
                    f"{record.subject_folder}/{record.filename}",
                    f"emotion {record.emotion!r} is not one the {protocol.name} protocol knows "
                    f"({', '.join(sorted(vocabulary))}); correct it with an erratum (--errata)",
                )
            )
        return dataclasses.replace(
            release, records=tuple(records), notes=release.notes + tuple(notes)
        )

    def _read_records(self, dl_manager: tfds.download.DownloadManager) -> list[ClipRecord]:
        release = self._read_manual_dir(dl_manager)
        assert isinstance(release, ReleaseRecords)
        keep_release_notes(self, release)
        check_usable(release)
        return list(release.records)


class SheetReleaseBuilder(ReleaseBuilder, skip_registration=True):
    """A release builder whose reader is a `data_builders.reading.SheetReader` (SAMM,
    MMEW, CAS(ME)^3): a subclass sets `READER`, `PROTOCOL`, `BUILDER_CONFIGS` and
    `MANUAL_DOWNLOAD_INSTRUCTIONS`; it reads `READER.dataset`."""

    READER: ClassVar[SheetReader]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.DATASETS = (cls.READER.dataset,)

    def read_release(self, manual_dir: Path) -> ReleaseRecords:
        """The release in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        return self.READER(
            manual_dir,
            errata=self.errata_for(self.READER.dataset),
            annotation=self.chosen_annotation(),
        )
