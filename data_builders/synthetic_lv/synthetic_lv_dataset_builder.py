"""TFDS builder of `synthetic_lv`: the long recordings synthetic_me's clips are cut from.

One generator, one truth: the recordings are `mer_jax.synthetic.plan_recordings` of the
same spec as synthetic_me's (same subjects, expressions, head motion, blinks; only the
frame size differs, as a spotting model reads low resolution), kept whole with every
interval (onset, apex, offset, micro or macro, emotion, AUs) as ground truth.

What a spotting model needs, at low resolution (public spotting code works this way):
each recording is aligned once, on its first frame's landmarks (the jittered ones a face
pipeline reports), every `step_ms` a frame is rendered and cropped to `crop_size`, and
the flow from each sampled frame to the one `span` samples later (k = span x step, about
half a micro-expression) is area-pooled to `grid` x `grid` x 2 and stored as float16. A
recording is rendered in chunks of `_CHUNK` sampled frames, so memory stays bounded
whatever its length; the features of a 30-minute recording are a few MB.

`python -m data_builders.cli synthetic_lv --dry_run` prints the videos, subjects and
micro and macro intervals from the plan alone.
"""

import dataclasses
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any, ClassVar

import cv2
import numpy as np
import tensorflow_datasets as tfds

from data_builders.base import MERBuilder, map_clips
from mer_jax.preprocess.face import align_from_landmarks, warp_crop
from mer_jax.preprocess.flow import compute_flow, resize_flow
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
# Sampled frames rendered at once: bounds the memory of a recording of any length.
_CHUNK = 64


@dataclasses.dataclass(eq=False)
class SyntheticLVConfig(tfds.core.BuilderConfig):
    """The generator fields shared with synthetic_me (so the recordings are its), the
    frame size rendered, and the stored motion features (module docstring)."""

    num_subjects: int = _GENERATOR_DEFAULTS.num_subjects
    clips_per_subject: int = _GENERATOR_DEFAULTS.clips_per_subject
    seed: int = _GENERATOR_DEFAULTS.seed
    frame_size: int = 112
    crop_size: int = 64
    step_ms: int = 80
    span: int = 2
    grid: int = 8
    flow_method: str = "dis"

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
        return max(1, round(self.step_ms * self.spec().fps / 1000.0))


def recording_motion(
    recording: Recording, spec: SyntheticSpec, config: SyntheticLVConfig
) -> dict[str, np.ndarray]:
    """The sampled frame numbers and (samples - span, grid, grid, 2) float16 pooled flows
    of one recording, from each sampled frame to the one `span` samples later."""
    numbers = np.arange(1, recording.num_frames + 1, config.step_frames())
    identity = subject_identity(spec, recording.subject)
    affine = None
    recent: deque[np.ndarray] = deque(maxlen=config.span)
    motion = []
    for start in range(0, len(numbers), _CHUNK):
        rendered = render_frames(recording, identity, spec, numbers[start : start + _CHUNK])
        if affine is None:
            affine = align_from_landmarks(rendered.landmarks[0], config.crop_size)
        for image in rendered.images:
            crop = cv2.cvtColor(warp_crop(image, affine, config.crop_size), cv2.COLOR_RGB2GRAY)
            if len(recent) == config.span:
                flow = compute_flow(recent[0], crop, config.flow_method)
                motion.append(resize_flow(flow, config.grid).astype(np.float16))
            recent.append(crop)
    shape = (0, config.grid, config.grid, 2)
    return {
        "frame_numbers": numbers.astype(np.int32),
        "motion": np.stack(motion) if motion else np.zeros(shape, np.float16),
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
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release (generator 2)."}
    BUILDER_CONFIGS: ClassVar[list[SyntheticLVConfig]] = [
        SyntheticLVConfig(name="default", description="synthetic_me's recordings, whole")
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        grid = config.grid
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "video": tfds.features.Text(),
                    "subject": tfds.features.Text(),
                    "num_frames": tfds.features.Scalar(np.int32),
                    "frame_numbers": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "motion": tfds.features.Tensor(
                        shape=(None, grid, grid, 2),
                        dtype=np.float16,
                        doc="flow from frame_numbers[i] to frame_numbers[i + span], pooled",
                    ),
                    "onset": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "apex": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "offset": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "interval_type": tfds.features.Sequence(tfds.features.Text()),
                    "emotion": tfds.features.Sequence(tfds.features.Text()),
                    "action_units": tfds.features.Sequence(tfds.features.Text()),
                }
            ),
            metadata=tfds.core.MetadataDict(
                generator_version=GENERATOR_VERSION,
                fps=config.spec().fps,
                step_frames=config.step_frames(),
                span=config.span,
                crop_size=config.crop_size,
                grid=config.grid,
                flow_method=config.flow_method,
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
