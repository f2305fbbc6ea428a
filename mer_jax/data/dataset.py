"""Loaded datasets, as the training code receives them.

`data_builders.load(config.data)` builds a dataset on first use, reads it and returns
one of these; `launch.py` hands it to the run. Nothing in `mer_jax` builds or reads
TFDS files itself, so the arrows between the packages point one way.

- `MERDataset`: a labelled clip dataset (every sample of a protocol) as host numpy
  arrays, small enough to be resident on the device for a whole LOSO run.
- `PairCorpus`: a macro-expression frame-pair corpus for MA2MI pre-training; its pairs
  are read on demand (`source`, for grain) or all at once (`load_all`, when resident).
- `VideoCorpus`: a spotting database's long recordings (`Video`: sampled frame numbers,
  pooled motion features, ground-truth intervals), small enough to hold on the host.
"""

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mer_jax import hosts
from mer_jax.errors import UserError


def default_data_dir() -> str:
    """Where builds are cached unless told otherwise: $MER_JAX_DATA_DIR, else
    ~/.cache/mer_jax/datasets. Defined here, below both the builders that write the cache
    and `mer_jax.doctor`, which reports it."""
    return os.environ.get(
        "MER_JAX_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "mer_jax", "datasets")
    )


# Per-sample identity columns kept on the host for reports; never put on the device.
IDENTITY_FIELDS = ("sample_id", "dataset", "subject")


@dataclasses.dataclass(frozen=True)
class MERDataset:
    """All samples of a protocol, sorted by sample_id, as host numpy arrays.

    Attributes:
        name: the builder's name, e.g. "synthetic_me".
        class_names: the protocol's classes, in label order.
        examples: feature name -> array with one leading sample axis (text as str arrays).
        metadata: the build's settings (crop_size, flow_size, num_frames, action_units,
            ...): sizes a model must agree with are read from here.
    """

    name: str
    class_names: tuple[str, ...]
    examples: dict[str, np.ndarray]
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return len(self.examples["sample_id"])

    @property
    def labels(self) -> np.ndarray:
        return self.examples["label"]

    def __getitem__(self, field: str) -> np.ndarray:
        return self.examples[field]


def put_on_device(dataset: MERDataset, fields: Sequence[str], mesh: Mesh) -> dict[str, jax.Array]:
    """Copies the fields a method reads, plus the labels, to every device of the mesh.

    Replicated, because each device trains different folds on the same samples.
    """
    missing = [f for f in fields if f not in dataset.examples]
    if missing:
        raise UserError(
            f"The model reads fields {missing} that dataset {dataset.name!r} does not hold "
            f"(it has {sorted(dataset.examples)}); rebuild the dataset with a builder that "
            "stores them."
        )
    replicated = NamedSharding(mesh, PartitionSpec())
    arrays = {f: dataset.examples[f] for f in (*fields, "label")}
    arrays["label"] = arrays["label"].astype(np.int32)
    # Every process holds the whole (small) dataset; each fills its own devices.
    return {name: hosts.global_array(values, replicated) for name, values in arrays.items()}


class PairSource(Protocol):
    """Random access to the pairs of a corpus: `len(source)`, `source[i]` -> dict of numpy
    values (text as np.str_, scalars 0-d, frames uint8 (P, P, 3)). For
    `grain.MapDataset.source`."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class PairCorpus:
    """A built macro-expression pair corpus, read on demand.

    Attributes:
        name: the builder's name, e.g. "synthetic_macro".
        metadata: the build's metadata: subjects (namespaced, sorted), identities_known,
            num_pairs, num_clips, pair_size, ...
        source: the pairs, read from the build's files on demand.
        frame_bytes: bytes of frame_t + frame_t_plus_k over every pair (from the build's
            info, nothing read): decides between a device-resident corpus and streaming.
        load_all: reads every pair into stacked arrays, sorted by (subject, clip, t).
    """

    name: str
    metadata: Mapping[str, Any]
    source: PairSource
    frame_bytes: int
    load_all: Callable[[], dict[str, np.ndarray]]

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(self.metadata["subjects"])


@dataclasses.dataclass(frozen=True)
class Video:
    """One long recording of a spotting database, with its ground truth.

    Attributes:
        name: the recording's name, unique in its database.
        subject: its namespaced subject, e.g. "synthetic_lv/sub01".
        frame_numbers: (N,) int32, the sampled frames (1-based frame numbers).
        motion: (N - span, G, G, 2) float16: the flow from frame_numbers[i] to
            frame_numbers[i + span], area-pooled to a G x G grid on the aligned face.
        valid: (N - span,) bool: False where the face was lost or aligned anew inside
            the flow's span (its motion is zero): such a position scores nothing and is
            never inside a spotted interval.
        onset, apex, offset: (K,) int32 frame numbers of its K expression intervals.
        interval_type: (K,) "micro" or "macro".
        emotion, action_units: (K,) the intervals' annotations.
    """

    name: str
    subject: str
    frame_numbers: np.ndarray
    motion: np.ndarray
    valid: np.ndarray
    onset: np.ndarray
    apex: np.ndarray
    offset: np.ndarray
    interval_type: np.ndarray
    emotion: np.ndarray
    action_units: np.ndarray


@dataclasses.dataclass(frozen=True)
class VideoCorpus:
    """A built spotting database: every long recording, sorted by name, on the host.

    Attributes:
        name: the builder's name, e.g. "synthetic_lv".
        videos: the recordings.
        metadata: the build's settings: fps, step_frames (frames between two sampled
            frames), span (sampled frames a flow spans), grid, crop_size, ...
    """

    name: str
    videos: tuple[Video, ...]
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def fps(self) -> float:
        return float(self.metadata["fps"])

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(sorted({video.subject for video in self.videos}))

    def flow_frames(self) -> int:
        """Frames one stored flow spans: span x step_frames."""
        return int(self.metadata["span"]) * int(self.metadata["step_frames"])
