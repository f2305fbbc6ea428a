"""The TFDS builder base shared by every MER clip dataset.

A concrete builder says where its clips come from (`_read_records`) and which
protocol labels them; this base turns the records into examples (features in
`data_builders.clip_features`), computed in parallel over clips, and declares the
features and metadata. Builders write array_record files and are read without
TensorFlow (`tfds.data_source` / `builder.as_data_source`).

TFDS writes a build into an `incomplete.*` directory and renames it when complete,
so an interrupted build is never mistaken for a finished one.
"""

import abc
import dataclasses
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import ClassVar

import cv2
import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from data_builders.clip_features import ClipOptions, clip_example, features_dict
from data_builders.records import ClipRecord
from mer_jax.data.action_units import AU_LIST
from mer_jax.data.protocols import get_protocol
from mer_jax.errors import UserError


@dataclasses.dataclass(eq=False)
class ClipBuilderConfig(tfds.core.BuilderConfig):
    """Builder config fields every clip dataset has (see `ClipOptions`)."""

    crop_size: int = 128
    flow_size: int = 28
    flow_method: str = "tvl1"

    def __post_init__(self) -> None:
        """Validates the clip options now rather than mid-build."""
        self.clip_options()

    def clip_options(self) -> ClipOptions:
        """The feature options of this config."""
        return ClipOptions(self.crop_size, self.flow_size, self.flow_method)


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
        workers = max(1, min(self._workers or os.cpu_count() or 1, len(records)))
        with tqdm(total=len(records), desc=f"{self.name} clip features", unit="clip") as bar:
            if workers == 1:
                for record, label in zip(records, labels, strict=True):
                    example = clip_example(record, options, label)
                    bar.update()
                    yield record.sample_id, example
                return
            # "spawn": forking a process that may hold JAX or TFDS threads can deadlock.
            pool = ProcessPoolExecutor(
                workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
            )
            try:
                futures = [
                    pool.submit(clip_example, record, options, label)
                    for record, label in zip(records, labels, strict=True)
                ]
                for future in as_completed(futures):
                    example = future.result()
                    bar.update()
                    yield example["sample_id"], example
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
