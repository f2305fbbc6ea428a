"""Rendering a synthetic recording: any of its frames, from the subject's neutral face,
the expressions' AU displacement fields and time courses, head motion (with a little
out-of-plane rotation seen in perspective), blinks, illumination, sensor noise; and the
landmarks a face pipeline would report (the truth plus the measured jitter).

Every frame is a function of the recording and its number alone, so a clip cut from a
recording is the recording's own frames.
"""

import dataclasses
from collections.abc import Sequence
from statistics import NormalDist

import cv2
import numpy as np

from mer_jax.synthetic.action_units import (
    blink_sample_shift,
    blinked_landmarks,
    displaced_landmarks,
    displacement_field,
    eyelids,
    max_strain,
)
from mer_jax.synthetic.faces import Identity, face_axes
from mer_jax.synthetic.recordings import (
    _BLINK_MS,
    _FOCAL_FRAMES,
    _FRAME,
    _MAX_STRAIN,
    _MOTION,
    _MOTION_HZ,
    ClipPlan,
    Expression,
    Recording,
    SyntheticSpec,
    _Habits,
    _rng,
    subject_habits,
)


def _slow_path(rng: np.random.Generator, num_paths: int, seconds: np.ndarray) -> np.ndarray:
    """(len(seconds), num_paths) slow random paths of a recording, each a sum of three
    sinusoids at 0.05-0.5 Hz, within [-1, 1] and reaching at most 0.3..1 of it.

    Drawn once per recording and evaluated at any times, so a clip cut from a recording
    shows the same motion as the recording itself."""
    hz = rng.uniform(*_MOTION_HZ, (num_paths, 3))
    amplitude = rng.normal(size=(num_paths, 3))
    phase = rng.uniform(0.0, 2.0 * np.pi, (num_paths, 3))
    reach = rng.uniform(0.3, 1.0, num_paths)
    waves = amplitude * np.sin(2.0 * np.pi * hz * seconds[:, None, None] + phase)
    return waves.sum(-1) / np.abs(amplitude).sum(-1) * reach


def _head_poses(
    spec: SyntheticSpec, recording: Recording, numbers: np.ndarray, centre: np.ndarray
) -> np.ndarray:
    """(len(numbers), 3, 3) homographies from the neutral face to frames `numbers` of
    `recording`: translation, roll and scale in the image plane, and a small yaw and pitch
    seen through the virtual camera's perspective."""
    rng = _rng(spec, _MOTION, recording.subject, recording.index)
    px = spec.pixel_scale
    offset = rng.uniform(-1.0, 1.0, 2) * spec.head_offset_px * px
    roll0 = rng.uniform(-1.0, 1.0) * spec.head_rotation_deg
    path = _slow_path(rng, 6, numbers / spec.fps)
    shift = path[:, :2] * spec.head_drift_px * px
    roll = np.deg2rad(roll0 + path[:, 2] * spec.head_rotation_deg)
    yaw, pitch = np.deg2rad(path[:, 3:5] * spec.head_out_of_plane_deg).T
    scale = 1.0 + path[:, 5] * spec.head_scale
    focal = _FOCAL_FRAMES * spec.frame_size
    poses = np.empty((len(numbers), 3, 3))
    for i in range(len(numbers)):
        # Rotating the face plane about its centre, seen through a pinhole at `focal`.
        cy, sy, cx, sx = np.cos(yaw[i]), np.sin(yaw[i]), np.cos(pitch[i]), np.sin(pitch[i])
        ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
        k = np.diag([focal, focal, 1.0])
        tilt = k @ ry @ rx @ np.linalg.inv(k)
        c, s = scale[i] * np.cos(roll[i]), scale[i] * np.sin(roll[i])
        planar = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        to_centre, from_centre = np.eye(3), np.eye(3)
        to_centre[:2, 2] = centre + offset + shift[i]
        from_centre[:2, 2] = -centre
        poses[i] = to_centre @ planar @ tilt @ from_centre
    return poses


def _apply(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Maps (n, 2) points through a 3 x 3 homography."""
    mapped = points @ pose[:2, :2].T + pose[:2, 2]
    w = points @ pose[2, :2] + pose[2, 2]
    return mapped / w[:, None]


def _blink_closure(spec: SyntheticSpec, recording: Recording, numbers: np.ndarray) -> np.ndarray:
    """Per-frame eyelid closure (0 open, 1 shut) at frames `numbers`: the recording's blinks
    (a Poisson process at `blinks_per_minute`), each fast down and slower up."""
    rng = _rng(spec, _MOTION, recording.subject, recording.index, 1)
    minutes = recording.num_frames / spec.fps / 60.0
    count = int(rng.poisson(spec.blinks_per_minute * minutes))
    starts = rng.uniform(1.0, recording.num_frames, count)
    durations = np.maximum(3.0, rng.uniform(*_BLINK_MS, count) * spec.fps / 1000.0)
    depths = rng.uniform(0.5, 1.0, count)
    closure = np.zeros(len(numbers))
    for start, duration, depth in zip(starts, durations, depths, strict=True):
        t = numbers - start
        inside = (t > 0) & (t < duration)
        if not inside.any():
            continue
        closing = 0.4 * duration
        down = 0.5 - 0.5 * np.cos(np.pi * t / closing)
        up = 0.5 + 0.5 * np.cos(np.pi * (t - closing) / (duration - closing))
        shape = np.where(t < closing, down, up)
        closure = np.maximum(closure, np.where(inside, depth * shape, 0.0))
    return closure


def _illumination_drift(
    spec: SyntheticSpec, recording: Recording, numbers: np.ndarray
) -> np.ndarray:
    """The slow part of the per-frame illumination gain at frames `numbers`."""
    rng = _rng(spec, _MOTION, recording.subject, recording.index, 2)
    return 1.0 + _slow_path(rng, 1, numbers / spec.fps)[:, 0] * spec.illumination_drift


def _gaussian_levels() -> np.ndarray:
    """256 equiprobable Gaussian quantiles with unit standard deviation."""
    levels = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)])
    return (levels / levels.std()).astype(np.float32)


# Sensor noise looks random bytes up in these levels: several times cheaper than
# drawing normals, and the noise is a large share of the per-frame cost.
_NOISE_LEVELS = _gaussian_levels()


def _sensor_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    codes = np.frombuffer(rng.bytes(int(np.prod(shape))), np.uint8).reshape(shape)
    return cv2.LUT(codes, _NOISE_LEVELS * np.float32(std))


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: compare by identity
class RenderedFrames:
    """Frames of a recording: (n, S, S, 3) uint8 BGR images, the (n, 68, 2) landmarks a
    face pipeline would report (the truth plus `alignment_jitter_iod`) and the truth."""

    images: np.ndarray
    landmarks: np.ndarray
    true_landmarks: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: compare by identity
class RenderedClip:
    """A clip's JPEG-encoded frames (onset..offset) and its (frames, 68, 2) landmarks."""

    frames: tuple[bytes, ...]
    landmarks: np.ndarray


def _expression_field(
    expression: Expression, identity: Identity, habits: _Habits, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The expression's displacement field at its peak and the neutral-face box it moves."""
    field = displacement_field(
        identity.landmarks, expression.activations, size, expression.radius, habits.morphology
    )
    field *= expression.amplitude / float(np.sqrt((field**2).sum(-1)).max())
    # Only large (macro) amplitudes on tight AUs (eyelids, dimples) get here: such a
    # field would fold the skin, so its peak gives way to a bounded strain.
    strain = max_strain(field)
    if strain > _MAX_STRAIN:
        field *= _MAX_STRAIN / strain
    # The field is local to the AUs' regions: warping only the box around them is
    # much cheaper than the whole frame, and below 1/1000 px nothing is lost.
    x, y, w, h = cv2.boundingRect((np.abs(field).max(-1) > 1e-3).astype(np.uint8))
    box = np.array([(x, y), (x + w, y), (x, y + h), (x + w, y + h)], np.float64)
    return field, box


def clip_motion(
    plan: ClipPlan, identity: Identity, spec: SyntheticSpec, numbers: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The motion `render_frames` draws at frames `numbers` of a clip's expression: its
    displacement field (neutral-face pixels), its intensity at each frame and the head
    poses (neutral face -> frame homographies). `synthetic.truth` inverts it."""
    expression = plan.shown
    numbers = np.asarray(numbers, np.int64)
    field, _ = _expression_field(
        expression, identity, subject_habits(spec, plan.subject), spec.frame_size
    )
    poses = _head_poses(
        spec, plan.recording, numbers.astype(np.float64), identity.landmarks.mean(0)
    )
    return field, expression.profile[numbers - expression.onset], poses


def render_frames(
    recording: Recording, identity: Identity, spec: SyntheticSpec, numbers: Sequence[int]
) -> RenderedFrames:
    """Renders frames `numbers` (1-based) of `recording` from its subject's `identity`.

    Every frame is a function of the recording and its number alone, so rendering a
    recording whole, in chunks, or only a clip's onset..offset gives the same frames.
    """
    numbers = np.asarray(numbers, np.int64)
    size, n = spec.frame_size, len(numbers)
    habits = subject_habits(spec, recording.subject)
    poses = _head_poses(spec, recording, numbers.astype(np.float64), identity.landmarks.mean(0))
    closure = _blink_closure(spec, recording, numbers.astype(np.float64))
    drift = _illumination_drift(spec, recording, numbers.astype(np.float64))
    lids = eyelids(identity.landmarks)
    _, _, iod = face_axes(identity.landmarks)
    common_sd, point_sd = (iod * s for s in spec.alignment_jitter_iod)
    fields: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size, 3), np.uint8)
    landmarks, truth = np.empty((n, 68, 2)), np.empty((n, 68, 2))
    for i, number in enumerate(numbers):
        frame_rng = _rng(spec, _FRAME, recording.subject, recording.index, int(number))
        # Backward warp: frame pixel -> neutral-face point (head pose undone) -> the
        # neutral point the expression moved there -> the lid skin a blink slid there.
        inverse = np.linalg.inv(poses[i]).astype(np.float32)
        w = inverse[2, 0] * xs + inverse[2, 1] * ys + inverse[2, 2]
        map_x = (inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]) / w
        map_y = (inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]) / w
        field, intensity = None, 0.0
        for e, expression in enumerate(recording.expressions):
            if expression.onset <= number <= expression.offset:
                intensity = float(expression.profile[number - expression.onset])
                if e not in fields:
                    fields[e] = _expression_field(expression, identity, habits, size)
                field, field_box = fields[e]
                amplitude = expression.amplitude
        if intensity > 0.0:
            rows, cols = _frame_window(field_box, poses[i], 1.0, size)
            moved = cv2.remap(
                field,
                map_x[rows, cols],
                map_y[rows, cols],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            )
            map_x[rows, cols] -= np.float32(intensity) * moved[..., 0]
            map_y[rows, cols] -= np.float32(intensity) * moved[..., 1]
        if closure[i] > 0.0:
            # The expression shifts where a frame pixel samples the neutral face by at most
            # its amplitude, so pixels showing a lid's region lie within that of its image.
            margin = (amplitude if field is not None else 0.0) + 2.0
            for lid in lids:
                rows, cols = _frame_window(lid.blink_region(), poses[i], margin, size)
                wx, wy = map_x[rows, cols], map_y[rows, cols]
                shift = blink_sample_shift(lid, wx, wy, closure[i]).astype(np.float32)
                map_x[rows, cols] = wx - shift * np.float32(lid.e_y[0])
                map_y[rows, cols] = wy - shift * np.float32(lid.e_y[1])
        image = cv2.remap(
            identity.neutral, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        noise = _sensor_noise(frame_rng, image.shape, spec.noise_std)
        gain = drift[i] + frame_rng.normal(0.0, spec.flicker_std)
        # gain * image + noise, rounded and saturated to 8 bits, in one pass.
        images[i] = cv2.addWeighted(image, gain, noise, 1.0, 0.0, dtype=cv2.CV_8U)
        face = blinked_landmarks(identity.landmarks, lids, closure[i])
        if field is not None:
            face = displaced_landmarks(face, field, intensity)
        truth[i] = _apply(poses[i], face)
        jitter = frame_rng.normal(0.0, common_sd, 2) + frame_rng.normal(0.0, point_sd, (68, 2))
        landmarks[i] = truth[i] + jitter
    return RenderedFrames(images=images, landmarks=landmarks, true_landmarks=truth)


def render_clip(plan: ClipPlan, identity: Identity, spec: SyntheticSpec) -> RenderedClip:
    """Renders the clip of `plan`: its recording's frames onset..offset, JPEG-encoded."""
    rendered = render_frames(
        plan.recording, identity, spec, range(plan.onset, plan.offset + 1)
    )
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]
    frames = tuple(cv2.imencode(".jpg", image, jpeg)[1].tobytes() for image in rendered.images)
    return RenderedClip(frames=frames, landmarks=rendered.landmarks)


def _frame_window(
    corners: np.ndarray, pose: np.ndarray, margin: float, size: int
) -> tuple[slice, slice]:
    """Frame rows and columns covering neutral-face `corners` under `pose`, plus `margin`."""
    mapped = _apply(pose, corners)
    x0, y0 = np.floor(mapped.min(0) - margin).astype(int)
    x1, y1 = np.ceil(mapped.max(0) + margin).astype(int) + 1
    return slice(max(y0, 0), min(y1, size)), slice(max(x0, 0), min(x1, size))
