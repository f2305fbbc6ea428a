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

Steps 2-4 are written for any list of frames and any pair of frames, so further
options (e.g. T frames sampled evenly onset..offset with flows onset->t and t->offset)
only add frame numbers and pairs here, and every builder inherits them.
"""

import functools
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
        flow_method: "tvl1", "dis" or "farneback" (see `mer_jax.preprocess.flow`).
    """

    crop_size: int = 128
    flow_size: int = 28
    flow_method: str = "tvl1"

    def __post_init__(self) -> None:
        """Rejects options that cannot make features."""
        if self.flow_method not in FLOW_METHODS:
            raise UserError(
                f"unknown flow_method {self.flow_method!r}; choose one of {', '.join(FLOW_METHODS)}"
            )
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
    start: np.ndarray, end: np.ndarray, options: ClipOptions
) -> tuple[np.ndarray, np.ndarray]:
    """float16 (S, S, 2) flow and (S, S, 1) strain from crop `start` to crop `end`."""
    flow = compute_flow(
        cv2.cvtColor(start, cv2.COLOR_RGB2GRAY),
        cv2.cvtColor(end, cv2.COLOR_RGB2GRAY),
        options.flow_method,
    )
    strain = optical_strain(flow)[..., None]
    return (
        resize_flow(flow, options.flow_size).astype(np.float16),
        resize_flow(strain, options.flow_size).astype(np.float16),
    )


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
        flow, strain = _flow_and_strain(clip.crop(record.onset), clip.crop(record.apex), options)
        images = {
            "onset_image": clip.crop(record.onset),
            "apex_image": clip.crop(record.apex),
            "offset_image": clip.crop(record.offset),
        }
        landmarks_onset = clip.landmarks(record.onset)
        landmarks_apex = clip.landmarks(record.apex)
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
    }
