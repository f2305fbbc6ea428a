"""The TFDS builder base of the licensed long-video (spotting) databases.

CAS(ME)^2 (`casme_sq`), SAMM long videos (`samm_lv`) and CAS(ME)^3 Part A (`casme3_lv`)
each declare a `data_builders.reading.LongVideoReader` (where the sheet and the video
folders are, how a row names its video) and a `MANUAL_DOWNLOAD_INSTRUCTIONS`; this base
reads the release with it, like the clip builders (row problems skipped and reported in
one pass, `--strict`, `--errata`, the dry run's summary), and makes one example per
recording, annotated or not.

An example holds what `synthetic_lv` stores: the motion between sampled frames of the
aligned face (`mer_jax.preprocess.long_video.video_motion`, on frames read in bounded
chunks at the stride, only the sampled ones decoded), `valid` (False where the face was
lost or re-aligned inside a flow's span), and the intervals of the sheet. A recording in
which no face is found at all is skipped and named, like a clip without a face.
"""

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from data_builders.base import (
    ManualDirBuilder,
    MERBuilder,
    clip_failure,
    keep_release_notes,
    map_clips,
)
from data_builders.reading import LongVideoReader, check_usable
from data_builders.records import LongVideo, VideoRelease
from mer_jax.preprocess.long_video import MotionSpec, folder_chunks, video_motion

_MOTION_DEFAULTS = MotionSpec()


@dataclasses.dataclass(eq=False)
class LongVideoConfig(tfds.core.BuilderConfig):
    """The stored motion features (`mer_jax.preprocess.long_video.MotionSpec`)."""

    step_ms: int = _MOTION_DEFAULTS.step_ms
    span: int = _MOTION_DEFAULTS.span
    crop_size: int = _MOTION_DEFAULTS.crop_size
    grid: int = _MOTION_DEFAULTS.grid
    flow_method: str = _MOTION_DEFAULTS.flow_method

    def motion_spec(self) -> MotionSpec:
        """The motion features of this config."""
        return MotionSpec(
            step_ms=self.step_ms,
            span=self.span,
            crop_size=self.crop_size,
            grid=self.grid,
            flow_method=self.flow_method,
        )


def motion_metadata(config: LongVideoConfig, fps: float) -> dict[str, Any]:
    """What a long-video build's metadata says of its stored motion (predict on one's own
    video extracts the same from it)."""
    return {
        "fps": fps,
        "step_frames": config.motion_spec().step_frames(fps),
        "span": config.span,
        "crop_size": config.crop_size,
        "grid": config.grid,
        "flow_method": config.flow_method,
    }


def video_features(grid: int) -> tfds.features.FeaturesDict:
    """The TFDS features of one long video (what `mer_jax.data.dataset.Video` reads)."""
    text = tfds.features.Text
    frames = tfds.features.Tensor(shape=(None,), dtype=np.int32)
    return tfds.features.FeaturesDict(
        {
            "video": text(doc="the frame folder below the frame root (generated: the recording)"),
            "subject": text(doc="namespaced: dataset/subject folder"),
            "num_frames": tfds.features.Scalar(np.int32, doc="frames on disk"),
            "frame_numbers": tfds.features.Tensor(
                shape=(None,), dtype=np.int32, doc="the sampled frames, original numbers"
            ),
            "motion": tfds.features.Tensor(
                shape=(None, grid, grid, 2),
                dtype=np.float16,
                doc="flow from frame_numbers[i] to frame_numbers[i + span], pooled",
            ),
            "valid": tfds.features.Tensor(
                shape=(None,), dtype=np.bool_, doc="motion[i] is of one aligned face"
            ),
            "motion_notes": tfds.features.Sequence(text(), doc="face lost and found again"),
            "onset": frames,
            "apex": frames,
            "offset": frames,
            "interval_type": tfds.features.Sequence(text(), doc='"micro" or "macro"'),
            "emotion": tfds.features.Sequence(text()),
            "action_units": tfds.features.Sequence(text()),
        }
    )


def video_example(video: LongVideo, spec: MotionSpec, progress: bool) -> dict[str, Any]:
    """The features of one recording (keys of `video_features`); `progress` shows a bar
    of its sampled frames (an hour of video is a long wait behind one tick of the
    builder's bar of videos).

    Raises:
        UserError: no face in the whole recording, or an unreadable frame; names it.
    """
    step = spec.step_frames(video.fps)
    frames = list(zip(video.frame_numbers, video.frame_paths, strict=True))
    motion = video_motion(
        folder_chunks(frames, step), spec, source=video.video, progress=progress
    )
    intervals = video.intervals
    return {
        "video": video.video,
        "subject": video.subject,
        "num_frames": np.int32(len(video.frame_numbers)),
        "frame_numbers": np.asarray(motion.frame_numbers, np.int32),
        "motion": np.asarray(motion.motion, np.float16),
        "valid": np.asarray(motion.valid, np.bool_),
        "motion_notes": list(motion.notes),
        "onset": np.array([i.onset for i in intervals], np.int32),
        "apex": np.array([i.apex for i in intervals], np.int32),
        "offset": np.array([i.offset for i in intervals], np.int32),
        "interval_type": [i.interval_type for i in intervals],
        "emotion": [i.emotion for i in intervals],
        "action_units": [i.action_units_raw for i in intervals],
    }


class LongVideoBuilder(ManualDirBuilder, MERBuilder, skip_registration=True):
    """Base of the long-video builders of licensed databases: one "train" split, one
    example per recording. A subclass sets `READER`, `BUILDER_CONFIGS` and
    `MANUAL_DOWNLOAD_INSTRUCTIONS`."""

    KIND: ClassVar[str] = "videos"  # what `data_builders.load` returns: a VideoCorpus
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    MANUAL_DIR_HOLDS = "its licensed release"
    APPLIES_ERRATA = True
    READS_ANNOTATION = True
    READER: ClassVar[LongVideoReader]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.DATASETS = (cls.READER.dataset,)

    def read_release(self, manual_dir: Path) -> VideoRelease:
        """The videos of the release in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        release = self.READER(
            manual_dir,
            errata=self.errata_for(self.READER.dataset),
            annotation=self.chosen_annotation(),
        )
        return dataclasses.replace(release, notes=release.notes + self.foreign_errata_notes())

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=video_features(config.grid),
            metadata=tfds.core.MetadataDict(
                **motion_metadata(config, self.READER.fps),
                # Filled in by the build:
                release_notes=[],
                skipped_clips=[],
            ),
        )

    def _split_generators(
        self, dl_manager: tfds.download.DownloadManager
    ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        release = self._read_manual_dir(dl_manager)
        assert isinstance(release, VideoRelease)
        keep_release_notes(self, release)
        check_usable(release)
        return {"train": self._generate_examples(release.videos)}

    def _generate_examples(
        self, videos: tuple[LongVideo, ...]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        spec = self.builder_config.motion_spec()
        # A bar per recording where they are computed here, not in worker processes.
        progress = self._workers == 1
        failures = []
        for index, example, error in map_clips(
            video_example,
            [(video, spec, progress) for video in videos],
            workers=self._workers,
            desc=f"{self.name} videos",
            unit="video",
        ):
            if error is not None:
                video = videos[index]
                failures.append(clip_failure(video, video.video, error))
                continue
            yield example["video"], example
        self.settle_failures(failures, len(videos), unit="videos")
