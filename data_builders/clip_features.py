"""The features of one clip, shared by every MER dataset builder.

From a `ClipRecord`:

1. Alignment: one similarity transform per clip, estimated on the ONSET frame (eyes
   level and at fixed crop positions, see `mer_jax.preprocess.face`) and applied to
   every frame used, so alignment adds no motion between frames. Onset landmarks come
   from the clip's landmarks sidecar when it has the onset frame, else from dlib on
   the onset frame. Face-cropped releases are not re-aligned: their frames are only
   resized to the crop.
2. Aligned uint8 crops (C x C x 3) of the onset, apex and offset frames.
3. Optical flow onset -> apex at crop resolution, then area-resized to S x S (values
   stay in crop pixels); optical strain computed on the full-resolution flow, then
   resized the same way.
4. Onset and apex landmarks in crop coordinates: from the sidecar where it has those
   frames (transformed), else from dlib on the aligned crop.
5. With `num_frames` T > 0 (LTR3O's candidates): T frames sampled evenly in time from
   onset to offset (onset first, offset last; the present frame nearest each time
   point, so gaps and clips shorter than T repeat frames), their original numbers,
   crops and landmarks, and for every stored frame t the flows onset->t and t->offset
   with their strain, computed at crop resolution and resized to S x S like step 3.
   These flows use `frames_flow_method` (DIS by default: 2T flows a clip at TV-L1's
   0.1-0.3 s each would make the build the slowest part of a CPU run).

Every builder inherits these features from `clip_example`.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tensorflow_datasets as tfds

from data_builders.records import ClipRecord, read_landmarks_sidecar
from mer_jax.data.action_units import AU_LIST, multi_hot, parse_action_units
from mer_jax.errors import UserError
from mer_jax.preprocess import (
    FLOW_METHODS,
    FaceLandmarker,
    align_from_landmarks,
    compute_flow,
    optical_strain,
    resize_affine,
    resize_flow,
    transform_landmarks,
    warp_crop,
)

NUM_LANDMARKS = 68


@dataclass(frozen=True)
class ClipOptions:
    """How clip features are computed.

    Attributes:
        crop_size: side C of the aligned face crops; flow is computed at this size.
        flow_size: side S of the stored flow and strain maps.
        flow_method: method of the onset -> apex flow: "tvl1", "dis" or "farneback" (see
            `mer_jax.preprocess.flow`).
        num_frames: T, frames stored per clip with their flows onset->t and t->offset
            (0: none, for methods that only read onset -> apex).
        frames_flow_method: method of the onset->t and t->offset flows.
    """

    crop_size: int = 128
    flow_size: int = 28
    flow_method: str = "tvl1"
    num_frames: int = 16
    frames_flow_method: str = "dis"

    def __post_init__(self) -> None:
        """Rejects options that cannot make features."""
        for field in ("flow_method", "frames_flow_method"):
            if getattr(self, field) not in FLOW_METHODS:
                raise UserError(
                    f"unknown {field} {getattr(self, field)!r}; choose one of "
                    f"{', '.join(FLOW_METHODS)}"
                )
        # Onset, offset and at least one occurring frame between them.
        if self.num_frames != 0 and self.num_frames < 3:
            raise UserError(f"num_frames must be 0 or at least 3, got {self.num_frames}")
        # Flow maps are only ever downsized: upsizing them adds no information.
        if not 1 <= self.flow_size <= self.crop_size:
            raise UserError(
                f"need 1 <= flow_size <= crop_size; got crop_size {self.crop_size}, "
                f"flow_size {self.flow_size}"
            )


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


@functools.cache
def _shared_landmarker() -> FaceLandmarker:
    # One per process: loading the dlib model costs about a second.
    return FaceLandmarker()


def load_frame(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); grayscale files are replicated to 3 channels."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path} (missing, unreadable or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class _AlignedClip:
    """Aligned crops and crop-coordinate landmarks of the frames of one clip."""

    def __init__(self, record: ClipRecord, crop_size: int) -> None:
        self._record = record
        self._crop_size = crop_size
        # Frame number -> landmarks in that frame's pixels.
        self._frame_landmarks = (
            read_landmarks_sidecar(record.landmarks_path) if record.landmarks_path else {}
        )
        onset_frame = load_frame(record.frame_path(record.onset))
        if record.face_cropped:
            self.affine = resize_affine(onset_frame.shape, crop_size)
        else:
            if record.onset not in self._frame_landmarks:
                self._frame_landmarks[record.onset] = _shared_landmarker()(
                    onset_frame, source=str(record.frame_path(record.onset))
                )
            self.affine = align_from_landmarks(self._frame_landmarks[record.onset], crop_size)
        self._crops = {record.onset: warp_crop(onset_frame, self.affine, crop_size)}

    def crop(self, frame_number: int) -> np.ndarray:
        """The aligned uint8 (C, C, 3) crop of a frame."""
        if frame_number not in self._crops:
            frame = load_frame(self._record.frame_path(frame_number))
            self._crops[frame_number] = warp_crop(frame, self.affine, self._crop_size)
        return self._crops[frame_number]

    def landmarks(self, frame_number: int) -> np.ndarray:
        """float32 (68, 2) landmarks of a frame in crop coordinates."""
        if frame_number in self._frame_landmarks:
            return transform_landmarks(self._frame_landmarks[frame_number], self.affine)
        # A face-cropped frame is all face: predict on the whole crop instead of
        # detecting, as dlib's detector misses faces that touch the image border.
        side = self._crop_size - 1
        return _shared_landmarker()(
            self.crop(frame_number),
            source=f"the aligned crop of {self._record.frame_path(frame_number)}",
            face_box=(0, 0, side, side) if self._record.face_cropped else None,
        )


def _flow_and_strain(
    start: np.ndarray, end: np.ndarray, flow_size: int, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """float16 (S, S, 2) flow and (S, S, 1) strain from crop `start` to crop `end`."""
    flow = compute_flow(
        cv2.cvtColor(start, cv2.COLOR_RGB2GRAY),
        cv2.cvtColor(end, cv2.COLOR_RGB2GRAY),
        method,
    )
    strain = optical_strain(flow)[..., None]
    return (
        resize_flow(flow, flow_size).astype(np.float16),
        resize_flow(strain, flow_size).astype(np.float16),
    )


def sample_frames(frame_numbers: Sequence[int], num_frames: int) -> np.ndarray:
    """T frame numbers evenly spaced in time from the first to the last present frame.

    Each time point takes the present frame nearest to it, so a gap in the recording
    shifts a sample to its neighbour and a clip with fewer than T frames repeats
    frames; the first is always the onset and the last the offset.

    Args:
        frame_numbers: the clip's present frame numbers, ascending (onset..offset).
        num_frames: T.

    Returns:
        int32 (T,) original frame numbers, non-decreasing.
    """
    present = np.asarray(frame_numbers, np.int64)
    targets = np.linspace(present[0], present[-1], num_frames)
    nearest = np.abs(present[None, :] - targets[:, None]).argmin(axis=1)
    return present[nearest].astype(np.int32)


def _stored_frames(
    record: ClipRecord, clip: "_AlignedClip", options: ClipOptions
) -> dict[str, np.ndarray]:
    """The T stored frames of a clip with their landmarks and onset->t, t->offset flows."""
    numbers = sample_frames(record.frame_numbers, options.num_frames)
    flows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def flow(start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        # Repeated frames (short clips) compute each pair once.
        if (start, end) not in flows:
            flows[start, end] = _flow_and_strain(
                clip.crop(start), clip.crop(end), options.flow_size, options.frames_flow_method
            )
        return flows[start, end]

    to_t = [flow(record.onset, int(n)) for n in numbers]
    from_t = [flow(int(n), record.offset) for n in numbers]
    return {
        "frame_indices": numbers,
        "frames": np.stack([clip.crop(int(n)) for n in numbers]),
        "landmarks_frames": np.stack([clip.landmarks(int(n)) for n in numbers]),
        "flow_onset_to_t": np.stack([f for f, _ in to_t]),
        "flow_t_to_offset": np.stack([f for f, _ in from_t]),
        "strain_onset_to_t": np.stack([s for _, s in to_t]),
        "strain_t_to_offset": np.stack([s for _, s in from_t]),
    }


def clip_example(record: ClipRecord, options: ClipOptions, label: int) -> dict[str, object]:
    """The feature dict of one clip (keys and dtypes of `features_dict`).

    Args:
        record: the clip.
        options: crop and flow settings.
        label: the protocol class of the clip's emotion, -1 if the protocol excludes it.

    Raises:
        UserError: the clip cannot be processed (unreadable frame, no face found); the
            message names the clip.
    """
    try:
        clip = _AlignedClip(record, options.crop_size)
        flow, strain = _flow_and_strain(
            clip.crop(record.onset), clip.crop(record.apex), options.flow_size, options.flow_method
        )
        images = {
            "onset_image": clip.crop(record.onset),
            "apex_image": clip.crop(record.apex),
            "offset_image": clip.crop(record.offset),
        }
        landmarks_onset = clip.landmarks(record.onset)
        landmarks_apex = clip.landmarks(record.apex)
        frames = _stored_frames(record, clip, options) if options.num_frames else {}
    except (UserError, ValueError, OSError) as error:
        raise UserError(f"clip {record.sample_id}: {error}") from error
    return {
        "sample_id": record.sample_id,
        "dataset": record.dataset,
        "subject": record.subject,
        "filename": record.filename,
        "emotion": record.emotion,
        "label": np.int64(label),
        "action_units_raw": record.action_units_raw,
        "action_units": multi_hot(parse_action_units(record.action_units_raw).units),
        "fps": np.float32(record.fps),
        "onset_index": np.int32(record.onset),
        "apex_index": np.int32(record.apex),
        "offset_index": np.int32(record.offset),
        "apex_annotated": np.bool_(record.apex_annotated),
        **images,
        "flow": flow,
        "strain": strain,
        "landmarks_onset": landmarks_onset,
        "landmarks_apex": landmarks_apex,
        **frames,
    }
