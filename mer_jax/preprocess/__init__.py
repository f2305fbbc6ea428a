"""Frame preprocessing: face alignment and cropping, optical flow and strain, and the
features of a whole clip (`mer_jax.preprocess.clip`)."""

from mer_jax.preprocess.clip import (
    AlignedClip,
    ClipFrames,
    ClipOptions,
    clip_features,
    flow_and_strain,
    list_frames,
    load_frame,
    middle_frame,
    read_landmarks_sidecar,
    sample_frames,
)
from mer_jax.preprocess.face import (
    NUM_LANDMARKS,
    FaceLandmarker,
    NoFaceError,
    align_from_landmarks,
    resize_affine,
    shared_landmarker,
    to_rgb,
    transform_landmarks,
    warp_crop,
)
from mer_jax.preprocess.flow import (
    FLOW_METHODS,
    compute_flow,
    dis_flow,
    farneback_flow,
    optical_strain,
    resize_flow,
    tvl1_flow,
)

__all__ = [
    "FLOW_METHODS",
    "NUM_LANDMARKS",
    "AlignedClip",
    "ClipFrames",
    "ClipOptions",
    "FaceLandmarker",
    "NoFaceError",
    "align_from_landmarks",
    "clip_features",
    "compute_flow",
    "dis_flow",
    "farneback_flow",
    "flow_and_strain",
    "list_frames",
    "load_frame",
    "middle_frame",
    "optical_strain",
    "read_landmarks_sidecar",
    "resize_affine",
    "resize_flow",
    "sample_frames",
    "shared_landmarker",
    "to_rgb",
    "transform_landmarks",
    "tvl1_flow",
    "warp_crop",
]
