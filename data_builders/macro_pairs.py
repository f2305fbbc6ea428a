"""Frame pairs of macro-expression clips, the corpus of MA2MI pre-training, as TFDS.

MA2MI learns facial motion by reconstructing a (near-)future frame: from a clip it
takes frames `I_t` and `I_{t+k}`. This module is the one mechanism every macro
builder shares; a builder only says where its clips come from (a `MacroRelease` of
`MacroClip`s) and this base turns each clip into pairs, in parallel over clips
(`data_builders.base.map_clips`, the process pool of the micro builders).

Per clip (config fields of `MacroPairsConfig`):

1. k = max(1, round(k_at_30fps * fps / 30)) frames (half rounds up), so the pair spans
   the same time at every frame rate: k_at_30fps=2 gives k=2 at 30 fps, 4 at 60 fps.
2. t: `pairs_per_clip` frame numbers evenly spaced over the clip's span such that
   t + k is still inside it (and both frames are on disk, for recordings with gaps);
   every such t when the clip has fewer, or when pairs_per_clip is 0. A clip shorter
   than k + 1 frames gives no pair: it is skipped and reported, not fatal.
3. Face: ONE similarity alignment from the first frame of the clip's span (its
   landmarks sidecar if there is one, else dlib, as `mer_jax.preprocess.clip`),
   applied to every frame, so alignment adds no motion; the aligned crop is
   `crop_size` (default 128, like the micro builds) and is area-resized to the stored
   `pair_size` (default 64). Grayscale sources are replicated to 3 channels.

A clip that fails (no face found, unreadable frame or video) does not stop the others:
see `data_builders.base.MERBuilder.settle_failures` for when the build skips it (named
in the log and in the metadata's skipped_clips) and when it fails.

Frame numbers (`t`) are the original numbers: the integer in a frame file's name, or
the 0-based frame index of a video file.

One example per pair (`features_dict`): pair_id "dataset/subject folder/clip/t",
dataset, subject (namespaced "<namespace>/<folder>"), clip, t, k, fps and the uint8
crops frame_t, frame_t_plus_k. `info.metadata` holds subjects (sorted), num_pairs,
num_clips (clips that gave pairs), identities_known and identities (what the subject
names are), skipped_clips and release_notes.
"""

import abc
import dataclasses
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import cv2
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
from data_builders.records import LANDMARKS_POINTS, MacroClip, MacroRelease, RowNote
from mer_jax.errors import UserError
from mer_jax.preprocess import (
    align_from_landmarks,
    load_frame,
    read_landmarks_sidecar,
    shared_landmarker,
    warp_crop,
)
from mer_jax.preprocess.video import count_frames, read_frames


@dataclasses.dataclass(frozen=True)
class PairOptions:
    """How pairs are cut from a clip (see the module docstring).

    Attributes:
        crop_size: side of the aligned face crop.
        pair_size: side of the stored frames (area-resized from the crop).
        k_at_30fps: the pair's frame gap at 30 fps; scaled by the clip's fps.
        pairs_per_clip: pairs per clip, evenly spaced; 0: every t.
    """

    crop_size: int = 128
    pair_size: int = 64
    k_at_30fps: int = 2
    pairs_per_clip: int = 16

    def __post_init__(self) -> None:
        """Rejects options that cannot make pairs."""
        if not 1 <= self.pair_size <= self.crop_size:
            raise UserError(
                f"need 1 <= pair_size <= crop_size; got crop_size {self.crop_size}, "
                f"pair_size {self.pair_size}"
            )
        if self.k_at_30fps < 1:
            raise UserError(f"k_at_30fps must be at least 1, got {self.k_at_30fps}")
        if self.pairs_per_clip < 0:
            raise UserError(f"pairs_per_clip must be >= 0 (0: every t), got {self.pairs_per_clip}")


@dataclasses.dataclass(eq=False)
class MacroPairsConfig(tfds.core.BuilderConfig):
    """Builder config fields every macro pair dataset has (see `PairOptions`)."""

    crop_size: int = 128
    pair_size: int = 64
    k_at_30fps: int = 2
    pairs_per_clip: int = 16

    def __post_init__(self) -> None:
        """Validates the pair options now rather than mid-build."""
        self.pair_options()

    def pair_options(self) -> PairOptions:
        """The pair options of this config."""
        return PairOptions(self.crop_size, self.pair_size, self.k_at_30fps, self.pairs_per_clip)


def pair_step(fps: float, k_at_30fps: int) -> int:
    """k in frames at `fps`: k_at_30fps scaled by fps / 30, half rounding up, at least 1."""
    return max(1, math.floor(k_at_30fps * fps / 30.0 + 0.5))


def plan_pairs(frame_numbers: Sequence[int], k: int, pairs_per_clip: int) -> list[int]:
    """The t of a clip's pairs: t and t + k both present, evenly spaced over the span.

    Args:
        frame_numbers: the frame numbers present in the clip's span, ascending.
        k: the frame gap.
        pairs_per_clip: how many; 0, or more than the clip has: every valid t.

    Returns:
        ascending frame numbers t (empty when the clip is shorter than k + 1 frames).
    """
    present = set(frame_numbers)
    candidates = [t for t in frame_numbers if t + k in present]
    if pairs_per_clip == 0 or len(candidates) <= pairs_per_clip:
        return candidates
    # More candidates than pairs: the rounded positions are distinct.
    positions = np.round(np.linspace(0, len(candidates) - 1, pairs_per_clip)).astype(int)
    return [candidates[i] for i in positions]


def features_dict(options: PairOptions) -> tfds.features.FeaturesDict:
    """The TFDS features of one pair (the contract the pre-training loop reads)."""
    frame = (options.pair_size, options.pair_size, 3)
    text = tfds.features.Text
    return tfds.features.FeaturesDict(
        {
            "pair_id": text(doc="dataset/subject folder/clip/t"),
            "dataset": text(),
            "subject": text(doc="namespaced: <namespace>/<subject folder>"),
            "clip": text(),
            "t": tfds.features.Scalar(np.int32, doc="original frame number (video: 0-based)"),
            "k": tfds.features.Scalar(np.int32, doc="frames from frame_t to frame_t_plus_k"),
            "fps": tfds.features.Scalar(np.float32),
            "frame_t": tfds.features.Tensor(shape=frame, dtype=np.uint8, doc="aligned RGB"),
            "frame_t_plus_k": tfds.features.Tensor(shape=frame, dtype=np.uint8),
        }
    )


def read_landmark_points(path: Path) -> np.ndarray:
    """float32 (68, 2) landmarks of a points file: 68 lines "x y" (CK+'s format).

    Raises:
        UserError: not 68 rows of two numbers; names the file.
    """
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except (ValueError, OSError) as error:
        raise UserError(f"landmarks file {path} is not 68 lines of 'x y': {error}") from None
    if points.shape != (68, 2):
        raise UserError(f"landmarks file {path} holds {points.shape}, not 68 lines of 'x y'")
    return points.astype(np.float32)


@dataclasses.dataclass
class ClipPairs:
    """What one clip gave: its pair examples, or why it gave none."""

    examples: list[dict[str, Any]]
    skipped: str = ""


class _Aligner:
    """Aligned, resized crops of a clip's frames, all with the first frame's alignment."""

    def __init__(self, clip: MacroClip, options: PairOptions) -> None:
        self._clip = clip
        self._options = options
        self._affine: np.ndarray | None = None

    def first(self, number: int, image: np.ndarray, source: str) -> None:
        """Fixes the alignment from the first frame of the span (sidecar, else dlib)."""
        landmarks = None
        path = self._clip.landmarks_path
        if path is not None and self._clip.landmarks_format == LANDMARKS_POINTS:
            landmarks = read_landmark_points(path)
        elif path is not None:
            landmarks = read_landmarks_sidecar(path).get(number)
        if landmarks is None:
            landmarks = shared_landmarker()(image, source=source)
        self._affine = align_from_landmarks(landmarks, self._options.crop_size)

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The uint8 (pair_size, pair_size, 3) crop of a frame."""
        assert self._affine is not None, "first() fixes the alignment"
        crop = warp_crop(image, self._affine, self._options.crop_size)
        size = self._options.pair_size
        if size != self._options.crop_size:
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        return crop


def clip_pairs(clip: MacroClip, options: PairOptions) -> ClipPairs:
    """The pair examples of one clip (keys and dtypes of `features_dict`).

    Raises:
        UserError: the clip cannot be processed (no face found on its first frame,
            unreadable frame or video); the message names the clip and file.
    """
    k = pair_step(clip.fps, options.k_at_30fps)
    try:
        if clip.video_path is not None:
            frames, ts, count = _video_frames(clip, options, k)
        else:
            frames, ts, count = _image_frames(clip, options, k)
    except (UserError, ValueError, OSError, KeyError) as error:
        raise UserError(f"clip {clip.clip_id} ({clip.source}): {error}") from error
    if not ts:
        return ClipPairs(
            [],
            f"clip {clip.clip_id} ({clip.source}): no pair: {count} frame(s) in its span, "
            f"a pair needs frames t and t+{k} (k={k} at {clip.fps:g} fps)",
        )
    examples = [
        {
            "pair_id": f"{clip.clip_id}/{t}",
            "dataset": clip.dataset,
            "subject": clip.subject,
            "clip": clip.clip,
            "t": np.int32(t),
            "k": np.int32(k),
            "fps": np.float32(clip.fps),
            "frame_t": frames[t],
            "frame_t_plus_k": frames[t + k],
        }
        for t in ts
    ]
    return ClipPairs(examples)


def _image_frames(
    clip: MacroClip, options: PairOptions, k: int
) -> tuple[dict[int, np.ndarray], list[int], int]:
    """(crops of the frames the pairs need, the pairs' t, frames in the span)."""
    count = len(clip.frame_numbers)
    ts = plan_pairs(clip.frame_numbers, k, options.pairs_per_clip)
    if not ts:
        return {}, ts, count
    aligner = _Aligner(clip, options)
    first = clip.frame_numbers[0]
    aligner.first(first, load_frame(clip.frame_path(first)), str(clip.frame_path(first)))
    needed = sorted(set(ts) | {t + k for t in ts})
    return {n: aligner.crop(load_frame(clip.frame_path(n))) for n in needed}, ts, count


def _video_frames(
    clip: MacroClip, options: PairOptions, k: int
) -> tuple[dict[int, np.ndarray], list[int], int]:
    """As `_image_frames`, decoding the video once (twice if its container overstates
    the frame count)."""
    path = clip.video_path
    assert path is not None
    count = len(clip.frame_numbers) or count_frames(path)
    ts = plan_pairs(range(count), k, options.pairs_per_clip)
    if not ts:
        return {}, ts, count
    aligner = _Aligner(clip, options)
    needed = set(ts) | {t + k for t in ts}
    frames, decoded = _decode_video(path, needed, aligner)
    if needed - frames.keys():
        # Fewer frames than the container said: plan again on what is really there.
        count = decoded
        ts = plan_pairs(range(count), k, options.pairs_per_clip)
        needed = set(ts) | {t + k for t in ts}
        if needed - frames.keys():
            more, _ = _decode_video(path, needed - frames.keys(), aligner)
            frames.update(more)
    return {n: frames[n] for n in needed}, ts, count


def _decode_video(
    path: Path, keep: set[int], aligner: _Aligner
) -> tuple[dict[int, np.ndarray], int]:
    """Crops of the frames in `keep`; fixes the aligner on frame 0. Returns (crops, frames
    decoded), stopping after the last kept frame."""

    def crop(index: int, rgb: np.ndarray) -> np.ndarray:
        if index == 0:
            aligner.first(0, rgb, f"{path} frame 0")
        return aligner.crop(rgb)

    crops, decoded = read_frames(path, keep | {0}, until=max(keep, default=0), transform=crop)
    return {n: crops[n] for n in keep if n in crops}, decoded


class MacroPairsBuilder(MERBuilder):
    """Base of the macro-expression pair builders: one "train" split of every pair.

    A subclass implements `_read_clips`; `IDENTITIES_KNOWN` / `IDENTITIES` say what
    its subject names are (the pre-training leakage guard reads them).
    """

    KIND: ClassVar[str] = "pairs"  # what `data_builders.load` returns: a PairCorpus
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    IDENTITIES_KNOWN: ClassVar[bool] = True
    IDENTITIES: ClassVar[str] = "subject ids of the release"

    @abc.abstractmethod
    def _read_clips(self, dl_manager: tfds.download.DownloadManager) -> MacroRelease:
        """The clips of the corpus (generating or locating the raw data as needed)."""

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=features_dict(config.pair_options()),
            metadata=tfds.core.MetadataDict(
                crop_size=config.crop_size,
                pair_size=config.pair_size,
                k_at_30fps=config.k_at_30fps,
                pairs_per_clip=config.pairs_per_clip,
                identities_known=self.IDENTITIES_KNOWN,
                identities=self.IDENTITIES,
                # Filled in by the build:
                subjects=[],
                num_pairs=0,
                num_clips=0,
                skipped_clips=[],
                release_notes=[],
            ),
        )

    def _split_generators(
        self, dl_manager: tfds.download.DownloadManager
    ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        release = self._read_clips(dl_manager)
        keep_release_notes(self, release)
        return {"train": self._generate_examples(release)}

    def _generate_examples(self, release: MacroRelease) -> Iterator[tuple[str, dict[str, Any]]]:
        clips = release.clips
        options = self.builder_config.pair_options()
        failures: list[RowNote] = []
        skipped: list[str] = []
        subjects: set[str] = set()
        num_pairs = num_clips = 0
        for index, result, error in map_clips(
            clip_pairs,
            [(clip, options) for clip in clips],
            workers=self._workers,
            desc=f"{self.name} frame pairs",
        ):
            if error is not None:
                failures.append(clip_failure(clips[index], clips[index].clip_id, error))
                continue
            assert result is not None
            if result.skipped:
                tqdm.write(f"skipped: {result.skipped}")
                skipped.append(result.skipped)
                continue
            subjects.add(clips[index].subject)
            num_clips += 1
            for example in result.examples:
                num_pairs += 1
                yield example["pair_id"], example
        self.settle_failures(failures, len(clips))
        if not num_pairs:
            raise UserError(
                f"{self.name}: no clip of {release.source} gave a pair:\n  "
                + "\n  ".join(sorted(skipped))
            )
        self.info.metadata.update(
            subjects=sorted(subjects),
            num_pairs=num_pairs,
            num_clips=num_clips,
            skipped_clips=sorted([*self.info.metadata["skipped_clips"], *skipped]),
        )


class MacroReleaseBuilder(ManualDirBuilder, MacroPairsBuilder):
    """Base of the macro builders read from a folder the user has (`manual_dir`).

    A subclass sets `MANUAL_DOWNLOAD_INSTRUCTIONS` and implements `read_release` (see
    `data_builders.base.ManualDirBuilder`), which lists folders and reads annotations
    only (videos: their container header and first frame), so the dry run is quick.
    """

    MANUAL_DIR_HOLDS = "a folder"

    def _read_clips(self, dl_manager: tfds.download.DownloadManager) -> MacroRelease:
        return self._read_manual_dir(dl_manager)


class PairSource:
    """Random access to the pairs of a built macro dataset, for `grain.MapDataset.source`.

    `source[i]` is a dict of numpy values with the keys of `features_dict`: Text
    features as `np.str_`, the rest as arrays of their declared dtype (t, k and fps
    0-d). Reads go to the build's array_record files; nothing is loaded up front.
    """

    def __init__(self, builder: MacroPairsBuilder, split: str = "train") -> None:
        """Opens the split of a prepared builder."""
        self._source = builder.as_data_source(split=split)
        self._features = dict(builder.info.features.items())

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        example = self._source[index]
        pair: dict[str, np.ndarray] = {}
        for key, feature in self._features.items():
            value = example[key]
            if isinstance(feature, tfds.features.Text):
                pair[key] = np.str_(value.decode() if isinstance(value, bytes) else value)
            else:
                pair[key] = np.asarray(value, dtype=feature.np_dtype)
        return pair

    def __repr__(self) -> str:
        return f"PairSource({self._source!r})"


def corpus_bytes(builder: MacroPairsBuilder) -> int:
    """Bytes of frame_t + frame_t_plus_k over every pair, from the build's info only."""
    num_pairs = builder.info.splits["train"].num_examples
    per_pair = sum(
        int(np.prod(builder.info.features[key].shape)) * np.dtype(np.uint8).itemsize
        for key in ("frame_t", "frame_t_plus_k")
    )
    return num_pairs * per_pair
