"""The true motion of a synthetic clip: where each onset pixel's skin is at the apex.

The generator renders every frame by backward warping (see `render.render_frames`): a
frame pixel p shows the neutral face at q - intensity * field(q), with q the pixel taken
back through the frame's head pose (a homography: the face plane's small yaw and pitch
are seen in perspective). The truth inverts the apex frame's warp for the skin each
onset pixel shows, so it is the flow an optical flow method should find from the onset
frame to the (annotated) apex frame, in frame pixels: head motion plus the expression.

Blinks, illumination changes, sensor noise and JPEG compression are not motion and are
not in it; a blink moves the eyelids without moving anything the truth follows, so
compare flows against the truth on a spec without blinks (`blinks_per_minute=0`).
"""

from dataclasses import dataclass

import cv2
import numpy as np

from mer_jax.synthetic.recordings import ClipPlan, SyntheticSpec, subject_identity
from mer_jax.synthetic.render import clip_motion, render_clip

# Fixed-point iterations of the forward warp: each contracts by the field's strain
# (at most 0.6, see recordings._MAX_STRAIN), so 60 bring the error far below 1e-6 px.
_INVERSE_ITERATIONS = 60


@dataclass(frozen=True, eq=False)  # array fields: compare by identity
class OnsetApexTruth:
    """A clip's onset and apex frames as written (RGB uint8, decoded) and the true flow.

    Attributes:
        onset, apex: (size, size, 3) uint8 RGB frames.
        flow: float32 (size, size, 2) [u, v] from onset to apex, in frame pixels.
    """

    onset: np.ndarray
    apex: np.ndarray
    flow: np.ndarray


def _sample(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`field` bilinearly sampled at (size, size, 2) points, zero outside (as the
    renderer samples it)."""
    points = points.astype(np.float32)
    sampled = cv2.remap(
        field, points[..., 0], points[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    return sampled.astype(np.float64)


def _through(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(..., 2) points mapped through a 3 x 3 homography."""
    mapped = points @ pose[:2, :2].T + pose[:2, 2]
    return mapped / (points @ pose[2, :2] + pose[2, 2])[..., None]


def true_onset_apex_flow(plan: ClipPlan, spec: SyntheticSpec) -> np.ndarray:
    """float32 (size, size, 2) [u, v]: the true flow from the clip's onset frame to its
    apex frame, in frame pixels (see the module docstring)."""
    identity = subject_identity(spec, plan.subject)
    field, intensity, poses = clip_motion(plan, identity, spec, [plan.onset, plan.apex])
    size = spec.frame_size
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    pixels = np.stack([xs, ys], axis=-1)
    # The neutral-face skin each onset pixel shows (the onset's intensity is about 0, but
    # the formula is the renderer's for any frame).
    taken_back = _through(np.linalg.inv(poses[0]), pixels)
    skin = taken_back - intensity[0] * _sample(field, taken_back)
    # Where that skin is at the apex: solve x = skin + intensity * field(x), then the pose.
    moved = skin.copy()
    for _ in range(_INVERSE_ITERATIONS):
        moved = skin + intensity[1] * _sample(field, moved)
    return (_through(poses[1], moved) - pixels).astype(np.float32)


def onset_apex_truth(plan: ClipPlan, spec: SyntheticSpec) -> OnsetApexTruth:
    """The clip's onset and apex frames exactly as the generator writes them (JPEG
    round trip included) and the true flow between them."""
    clip = render_clip(plan, subject_identity(spec, plan.subject), spec)

    def decoded(index: int) -> np.ndarray:
        image = cv2.imdecode(np.frombuffer(clip.frames[index], np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    return OnsetApexTruth(
        onset=decoded(0),
        apex=decoded(plan.apex - plan.onset),
        flow=true_onset_apex_flow(plan, spec),
    )
