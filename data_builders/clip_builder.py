"""The TFDS builder base shared by every MER clip dataset.

A concrete builder says where its clips come from (`_read_records`) and which
protocol labels them; this base turns the records into examples (features in
`data_builders.clip_features`), computed in parallel over clips, and declares the
features and metadata. Builders write array_record files and are read without
TensorFlow (`tfds.data_source` / `builder.as_data_source`).

TFDS writes a build into an `incomplete.*` directory and renames it when complete,
so an interrupted build is never mistaken for a finished one. A clip that fails (no
face found, unreadable frame) does not stop the others: the build computes every clip,
then fails naming each failed clip and its annotation row, and writes nothing complete.

`ReleaseBuilder` is the base of the builders of licensed databases: their records come
from the release a user has in `manual_dir`, through a reader of `data_builders.records`.
"""

import abc
import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, ClassVar, Protocol

import cv2
import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from data_builders.clip_features import ClipOptions, clip_example, features_dict
from data_builders.records import ClipRecord, ReleaseRecords
from mer_jax.data.action_units import AU_LIST
from mer_jax.data.protocols import get_protocol
from mer_jax.errors import UserError


@dataclasses.dataclass(eq=False)
class ClipBuilderConfig(tfds.core.BuilderConfig):
    """Builder config fields every clip dataset has (see `ClipOptions`)."""

    crop_size: int = 128
    flow_size: int = 28
    flow_method: str = "tvl1"
    num_frames: int = 16
    frames_flow_method: str = "dis"

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


def _init_worker() -> None:
    # Every worker process handles one clip at a time; OpenCV's own thread pool on
    # top of that would oversubscribe the cores.
    cv2.setNumThreads(1)


class ClipDatasetBuilder(tfds.core.GeneratorBasedBuilder):
    """Base of the MER clip dataset builders: one "train" split of every clip.

    Clips the protocol excludes are kept, with label -1, so a build serves several
    protocols; folds (LOSO, LODO) are made downstream.
    """

    PROTOCOL: ClassVar[str]  # name of the protocol in mer_jax.data.protocols

    def __init__(self, *, workers: int | None = None, **kwargs: object) -> None:
        """Creates the builder.

        Args:
            workers: processes computing clip features (default: all cores).
            **kwargs: `tfds.core.GeneratorBasedBuilder` arguments (data_dir, config,
                file_format).
        """
        self._workers = workers
        super().__init__(**kwargs)

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
            ),
        )

    def _split_generators(
        self, dl_manager: tfds.download.DownloadManager
    ) -> dict[str, Iterator[tuple[str, dict[str, object]]]]:
        records = self._read_records(dl_manager)
        protocol = get_protocol(self.PROTOCOL)
        # Labels first: an unknown emotion fails the build before any clip is computed.
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
        failures: list[str] = []
        calls = [(record, options, label) for record, label in zip(records, labels, strict=True)]
        for index, example, error in map_clips(
            clip_example, calls, workers=self._workers, desc=f"{self.name} clip features"
        ):
            if error is not None:
                record = records[index]
                failures.append(clip_failure(record, record.annotation_row, error))
                continue
            yield example["sample_id"], example
        raise_failures(self.name, failures, len(records))


def map_clips[Result](
    function: Callable[..., Result],
    calls: Sequence[tuple[Any, ...]],
    *,
    workers: int | None,
    desc: str,
    unit: str = "clip",
) -> Iterator[tuple[int, Result | None, UserError | None]]:
    """Runs `function(*call)` for every call, in worker processes, with a progress bar.

    The clip stage of every builder: one call per clip, each independent. A call that
    raises UserError (no face, unreadable frame) does not stop the others; it is yielded
    with its error so the caller can name every failed clip at the end.

    Args:
        function: a module-level function (it is pickled into spawned workers).
        calls: the positional arguments of each call.
        workers: processes (None: all cores); never more than there are calls. With 1
            everything runs in this process, in order.
        desc, unit: the progress bar's label and unit.

    Yields:
        (index into calls, result or None, UserError or None), in completion order.
    """
    workers = max(1, min(workers or os.cpu_count() or 1, len(calls)))
    with tqdm(total=len(calls), desc=desc, unit=unit) as bar:
        if workers == 1:
            for index, call in enumerate(calls):
                try:
                    result = function(*call)
                except UserError as error:
                    bar.update()
                    yield index, None, error
                    continue
                bar.update()
                yield index, result, None
            return
        # "spawn": forking a process that may hold JAX or TFDS threads can deadlock.
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
        )
        try:
            futures = {pool.submit(function, *call): index for index, call in enumerate(calls)}
            for future in as_completed(futures):
                bar.update()
                try:
                    result = future.result()
                except UserError as error:
                    yield futures[future], None, error
                    continue
                yield futures[future], result, None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class LocatedClip(Protocol):
    """A clip with a landmarks file (or none) and where one would be read from."""

    landmarks_path: Path | None
    landmarks_location: Path | None


def clip_failure(clip: LocatedClip, where: str, error: UserError) -> str:
    """One line naming a failed clip (`where`: its annotation row or folder) and the
    reason, with where a landmarks sidecar would go when no face was found; shown at once."""
    message = f"{where}: {error}" if where else str(error)
    if "no face found" in message and clip.landmarks_path is None and clip.landmarks_location:
        message += f" (the sidecar would be read from {clip.landmarks_location})"
    tqdm.write(f"failed: {message}")
    return message


def raise_failures(name: str, failures: Sequence[str], num_clips: int) -> None:
    """Fails a build in which some clips failed, naming them all (after trying every clip)."""
    if failures:
        # Raising leaves the build in TFDS's incomplete directory, which is removed:
        # nothing of it reads as a finished dataset.
        raise UserError(
            f"{name}: {len(failures)} of {num_clips} clips could not be built; nothing was "
            "written. Fix or remove them (or add a landmarks sidecar where no face was "
            "found) and build again:\n  " + "\n  ".join(sorted(failures))
        )


class ReleaseBuilder(ClipDatasetBuilder):
    """Base of the builders of licensed databases, read from the user's `manual_dir`.

    A subclass sets `MANUAL_DOWNLOAD_INSTRUCTIONS` (where the licence is requested,
    which layout is expected) and implements `read_release`, which only reads the
    annotation and lists folders: the dry run (`python -m data_builders.build NAME
    --dry_run`) calls it without building. Rows the reader skipped or fixed are logged
    during the build and kept in the built dataset's metadata ("release_notes").
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS: ClassVar[str]

    @abc.abstractmethod
    def read_release(self, manual_dir: Path) -> ReleaseRecords:
        """The clips of the release in `manual_dir` and the notes on its rows.

        Raises:
            UserError: a missing annotation, a wrong layout or a malformed row; the
                message names the file and row.
        """

    def _read_records(self, dl_manager: tfds.download.DownloadManager) -> list[ClipRecord]:
        try:
            manual_dir = Path(dl_manager.manual_dir)
        except AssertionError:
            raise UserError(
                f"dataset {self.name} is built from its licensed release, which was not "
                f"found: pass the release folder as manual_dir (data_builders.build(..., "
                f"manual_dir=DIR), --manual_dir DIR or --config.data.manual_dir=DIR).\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            ) from None
        release = self.read_release(manual_dir)
        for note in release.notes:
            tqdm.write(f"{self.name}: {note}")
        self.info.metadata["release_notes"] = [str(note) for note in release.notes]
        return list(release.records)
