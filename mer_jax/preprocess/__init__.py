"""Frame preprocessing: face alignment and cropping, optical flow and strain."""

from mer_jax.preprocess.face import (
    FaceLandmarker,
    NoFaceError,
    align_from_landmarks,
    resize_affine,
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
    "FaceLandmarker",
    "NoFaceError",
    "align_from_landmarks",
    "compute_flow",
    "dis_flow",
    "farneback_flow",
    "optical_strain",
    "resize_affine",
    "resize_flow",
    "to_rgb",
    "transform_landmarks",
    "tvl1_flow",
    "warp_crop",
]
