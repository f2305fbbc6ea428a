"""TFDS builder of `synthetic_lv`: the long recordings synthetic_me's clips are cut from.

One generator, one truth: the recordings are `mer_jax.synthetic.plan_recordings` of the
same spec as synthetic_me's (same subjects, expressions, head motion, blinks; only the
frame size differs, as a spotting model reads low resolution), kept whole with every
interval (onset, apex, offset, micro or macro, emotion, AUs) as ground truth.

What a spotting model needs, at low resolution (public spotting code works this way), is
computed by the one long-video extractor every long-video builder and prediction use
(`mer_jax.preprocess.long_video.video_motion`): every `step_ms` a frame is rendered, the
face aligned on the first frame's landmarks (the jittered ones a face pipeline reports:
the generator is the face locator) and cropped to `crop_size`, and the flow from each
sampled frame to the one `span` samples later (k = span x step, about half a
micro-expression) is area-pooled to `grid` x `grid` x 2 and stored as float16, with
`valid` per position (the face never leaves a synthetic recording, so all True). A
recording is rendered in chunks of sampled frames, so memory stays bounded whatever its
length; the features of a 30-minute recording are a few MB.

`python -m data_builders.cli synthetic_lv --dry_run` prints the videos, subjects and
micro and macro intervals from the plan alone.
"""

import dataclasses
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from data_builders.base import MERBuilder, map_clips
from data_builders.long_video_builder import LongVideoConfig, motion_metadata, video_features
from mer_jax.preprocess.long_video import CHUNK, video_motion
from mer_jax.preprocess.video import FrameChunk
from mer_jax.synthetic import (
    GENERATOR_VERSION,
    Recording,
    SyntheticSpec,
    all_recordings,
    render_frames,
    subject_identity,
)

DATASET = "synthetic_lv"
_GENERATOR_DEFAULTS = SyntheticSpec()


@dataclasses.dataclass(eq=False)
class SyntheticLVConfig(LongVideoConfig):
    """The generator fields shared with synthetic_me (so the recordings are its), the
    frame size rendered, and the stored motion features (`LongVideoConfig`'s, with this
    build's own defaults; module docstring)."""

    num_subjects: int = _GENERATOR_DEFAULTS.num_subjects
    clips_per_subject: int = _GENERATOR_DEFAULTS.clips_per_subject
    seed: int = _GENERATOR_DEFAULTS.seed
    frame_size: int = 112
    # A frame every 40 ms and the flow over 4 of them (k = 32 frames at 200 fps, about
    # half a micro-expression) on the whole 112 px face: chosen on a development build of
    # other recordings (generator seed 1, 6 subjects), never on the default build, where
    # the 80 ms step and 64 px crop of 1.1.0 left a micro-expression's motion (0.25-1 px
    # here) in the noise and a micro-expression 3-6 positions long (docs/evaluation.md,
    # "Spotting").
    crop_size: int = 112
    step_ms: int = 40
    span: int = 4

    def spec(self) -> SyntheticSpec:
        """The generator spec: synthetic_me's at this config's frame size."""
        return SyntheticSpec(
            num_subjects=self.num_subjects,
            clips_per_subject=self.clips_per_subject,
            seed=self.seed,
            frame_size=self.frame_size,
        )

    def step_frames(self) -> int:
        """Frames between two sampled frames at the spec's frame rate."""
        return self.motion_spec().step_frames(self.spec().fps)


def recording_chunks(
    recording: Recording, spec: SyntheticSpec, step: int
) -> Iterator[FrameChunk]:
    """Every `step`-th frame of a recording (1-based), rendered `CHUNK` at a time, with the
    jittered landmarks a face pipeline would report: the generator is the face locator."""
    numbers = np.arange(1, recording.num_frames + 1, step)
    identity = subject_identity(spec, recording.subject)
    for start in range(0, len(numbers), CHUNK):
        part = numbers[start : start + CHUNK]
        rendered = render_frames(recording, identity, spec, part)
        yield FrameChunk(part, rendered.images, rendered.landmarks)


def recording_motion(
    recording: Recording, spec: SyntheticSpec, config: SyntheticLVConfig
) -> dict[str, Any]:
    """The sampled frame numbers, (samples - span, grid, grid, 2) float16 pooled flows,
    their validity and the extractor's notes of one recording
    (`mer_jax.preprocess.long_video.video_motion`)."""
    found = video_motion(
        recording_chunks(recording, spec, config.step_frames()),
        config.motion_spec(),
        source=recording.name,
    )
    return {
        "frame_numbers": found.frame_numbers,
        "motion": found.motion,
        "valid": found.valid,
        "motion_notes": list(found.notes),
    }


def _recording_example(
    recording: Recording, spec: SyntheticSpec, config: SyntheticLVConfig
) -> dict[str, Any]:
    expressions = recording.expressions
    return recording_motion(recording, spec, config) | {
        "video": recording.name,
        "subject": f"{DATASET}/sub{recording.subject:02d}",
        "num_frames": np.int32(recording.num_frames),
        "onset": np.array([e.onset for e in expressions], np.int32),
        "apex": np.array([e.apex for e in expressions], np.int32),
        "offset": np.array([e.offset for e in expressions], np.int32),
        "interval_type": [e.kind for e in expressions],
        "emotion": [e.emotion for e in expressions],
        "action_units": [e.au_code for e in expressions],
    }


class Builder(MERBuilder):
    """synthetic_lv: one "train" split, one example per long recording."""

    KIND: ClassVar[str] = "videos"
    VERSION = tfds.core.Version("1.3.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Initial release (generator 2).",
        "1.1.0": "Motion from the one long-video extractor (mer_jax.preprocess.long_video), "
        "with `valid` per position (the face checked every second); the same motion.",
        "1.2.0": "A frame every 40 ms (was 80), the flow over 4 of them (the same 32 frames) "
        "on a 112 px crop (was 64): twice the positions, finer motion.",
        "1.3.0": "The features of every long-video build (`motion_notes` added, the "
        "extractor's notes, none on a generated face): the same motion.",
    }
    BUILDER_CONFIGS: ClassVar[list[SyntheticLVConfig]] = [
        SyntheticLVConfig(name="default", description="synthetic_me's recordings, whole")
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            features=video_features(config.grid),
            metadata=tfds.core.MetadataDict(
                generator_version=GENERATOR_VERSION,
                **motion_metadata(config, config.spec().fps),
            ),
        )

    def generated_summary(self) -> dict[str, Any]:
        """What the build would hold, from the generator's plan alone (the dry run)."""
        config = self.builder_config
        spec = config.spec()
        recordings = all_recordings(spec)
        intervals = Counter(e.kind for r in recordings for e in r.expressions)
        frames = sum(r.num_frames for r in recordings)
        return {
            "name": self.name,
            "config": config.name,
            "generator_version": GENERATOR_VERSION,
            "fps": spec.fps,
            "videos": len(recordings),
            "subjects": len({r.subject for r in recordings}),
            "intervals": {"micro": intervals["micro"], "macro": intervals["macro"]},
            "minutes": round(frames / spec.fps / 60.0, 1),
            "frames": frames,
            "sampled_frames": sum(
                len(range(1, r.num_frames + 1, config.step_frames())) for r in recordings
            ),
            "step_frames": config.step_frames(),
            "flow_span_frames": config.span * config.step_frames(),
        }

    def _split_generators(
        self, dl_manager: tfds.download.DownloadManager
    ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        del dl_manager  # generated: nothing to download or read
        return {"train": self._generate_examples()}

    def _generate_examples(self) -> Iterator[tuple[str, dict[str, Any]]]:
        config = self.builder_config
        spec = config.spec()
        recordings = all_recordings(spec)
        for index, example, error in map_clips(
            _recording_example,
            [(recording, spec, config) for recording in recordings],
            workers=self._workers,
            desc=f"{self.name} recordings",
            unit="video",
        ):
            if error is not None:
                # A generated recording must build whole.
                raise error
            yield recordings[index].name, example
