"""Writes a synthetic micro-expression database in the CASME II on-disk layout.

Layout (what the CASME II builder reads, plus two sidecars)::

    <out_dir>/CASME2_RAW_selected/sub01/EP03_01f/img46.jpg ... img97.jpg
    <out_dir>/CASME2-coding-synthetic.xlsx
    <out_dir>/landmarks/sub01/EP03_01f.csv     ground-truth 68 landmarks per frame
    <out_dir>/generation.json                  spec, generator version, fps, counts

The landmark sidecars have OpenFace's columns (frame, x_0..x_67, y_0..y_67), one row
per frame file, in frame pixels with pixel centres at integer coordinates (the
OpenCV and dlib convention), iBUG 68-point order.

Each clip is one subject's neutral face (see `faces`) animated by the AU
displacement field of its emotion (see `action_units`), scaled by a smooth
onset -> apex -> offset profile, and disturbed by the nuisance a real recording
has: head drift and rotation, blinks, illumination flicker, sensor noise and
JPEG compression. Everything is drawn from random streams keyed by (seed, kind,
purpose, subject, clip), so the bytes written depend on the spec only, never on
the number of worker processes or the order they finish in.
"""

import dataclasses
import datetime
import io
import json
import os
import pathlib
import shutil
import zipfile
from collections import Counter
from collections.abc import Sequence
from statistics import NormalDist

import cv2
import numpy as np
import openpyxl
from openpyxl.writer.excel import ExcelWriter
from tqdm.auto import tqdm

from mer_jax.guards import pid_alive
from mer_jax.preprocess.clip import write_landmarks_csv
from mer_jax.synthetic.action_units import (
    AU_ANCHORS,
    AUActivation,
    blink_sample_shift,
    blinked_landmarks,
    displaced_landmarks,
    displacement_field,
    eyelids,
    format_au_code,
    max_strain,
    parse_au_code,
)
from mer_jax.synthetic.faces import REFERENCE_FRAME_SIZE, Identity, make_identity
from mer_jax.workers import available_cores, worker_pool

GENERATOR_VERSION = 1

FRAMES_DIR = "CASME2_RAW_selected"
CODING_SHEET = "CASME2-coding-synthetic.xlsx"
LANDMARKS_DIR = "landmarks"
MANIFEST = "generation.json"
CODING_COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)

# Clip counts per emotion in CASME II (255 clips): each clip's emotion is drawn with
# these frequencies, so the class imbalance the methods face is the real one.
CASME2_EMOTION_COUNTS = {
    "others": 99,
    "disgust": 63,
    "happiness": 32,
    "repression": 27,
    "surprise": 25,
    "sadness": 7,
    "fear": 2,
}
# The MEGC 2019 composite's classes (negative 250, positive 109, surprise 83 of 442 clips)
# in the generator's CASME II vocabulary: negative as CASME II's disgust and repression, in
# CASME II's proportion of the two (63 : 27). Every clip has a class under megc2019_3class.
MEGC2019_COMPOSITE_EMOTION_COUNTS = {
    "disgust": 175,
    "repression": 75,
    "happiness": 109,
    "surprise": 83,
}
# The emotion frequencies a spec can draw its clips' emotions with, by name.
EMOTION_MIXES = {
    "casme2": CASME2_EMOTION_COUNTS,
    "megc2019_composite": MEGC2019_COMPOSITE_EMOTION_COUNTS,
}

# AU patterns per emotion with their base probabilities, after CASME II's coding.
# Several AUs appear under more than one emotion (4 in disgust, others, sadness and
# fear; 14/17 in repression and others; 1/2 in surprise and others), so the AUs alone
# do not give the class away.
EMOTION_AU_PATTERNS: dict[str, tuple[tuple[str, float], ...]] = {
    "happiness": (("6+12", 0.45), ("12", 0.3), ("R12", 0.1), ("L12", 0.05), ("6", 0.1)),
    "disgust": (
        ("4", 0.2),
        ("4+7", 0.15),
        ("9", 0.15),
        ("4+9", 0.1),
        ("10", 0.15),
        ("R10", 0.05),
        ("L10", 0.05),
        ("4+10", 0.15),
    ),
    "repression": (
        ("14", 0.25),
        ("15", 0.2),
        ("17", 0.2),
        ("15+17", 0.15),
        ("R14", 0.05),
        ("L14", 0.05),
        ("14+17", 0.1),
    ),
    "surprise": (("1+2", 0.6), ("1+2+5", 0.15), ("1+2+26", 0.1), ("1", 0.1), ("2", 0.05)),
    "others": (
        ("4", 0.18),
        ("7", 0.12),
        ("1", 0.08),
        ("14", 0.1),
        ("R2", 0.04),
        ("L2", 0.04),
        ("4+7", 0.1),
        ("17", 0.08),
        ("R4", 0.04),
        ("L4", 0.03),
        ("10", 0.05),
        ("24", 0.06),
        ("1+4", 0.04),
        ("25", 0.04),
    ),
    "sadness": (("1+4+15", 0.5), ("1+4", 0.2), ("4+15", 0.2), ("1+15", 0.1)),
    "fear": (("1+2+4+20", 0.6), ("1+4+20", 0.2), ("4+20", 0.2)),
}

# Per-kind defaults for the spec fields left as None.
_KIND_DEFAULTS = {
    "micro": {"fps": 200, "clip_frames": (30, 80), "amplitude_px": (0.5, 2.0), "au_radius": 1.0},
    "macro": {"fps": 30, "clip_frames": (60, 150), "amplitude_px": (3.0, 8.0), "au_radius": 1.5},
}
# Random streams: (seed, kind, purpose, subject, clip). A fixed length matters:
# SeedSequence pads with zeros, so [a, b] and [a, b, 0] would be the same stream.
_KIND_STREAM = {"micro": 1, "macro": 2}
_IDENTITY, _STYLE, _PLAN, _RENDER = range(4)
# Blink durations (closing plus reopening) of people at rest.
_BLINK_MS = (100.0, 250.0)
# Largest skin strain (Jacobian norm) of an expression: well clear of folding at 1.
_MAX_STRAIN = 0.6
# First frame number of a clip: CASME II clips are cut out of longer recordings.
_MAX_FIRST_FRAME = 300


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a synthetic database; equal specs give identical bytes.

    Pixel quantities are for the reference 224 x 224 frame (inter-ocular distance
    ~50 px, which the builder's 128 x 128 alignment maps to ~51 px) and scale with
    `frame_size`. Fields left as None take the `kind`'s default when the spec is
    created, so build a macro spec as `SyntheticSpec(kind="macro", ...)`:
    `dataclasses.replace(micro_spec, kind="macro")` would keep the micro values.

    Attributes:
        kind: "micro" (CASME II-like) or "macro" (a posed-expression corpus for
            MA2MI pre-training, with its own identities).
        num_subjects: number of subjects (sub01, sub02, ...).
        clips_per_subject: mean clips per subject; each subject gets this plus a
            deterministic draw from -clips_per_subject_jitter..+clips_per_subject_jitter
            (at least 1), as real subjects contribute unequal numbers of clips.
        clips_per_subject_jitter: see `clips_per_subject`.
        num_clips: the exact total of clips, dealt to the subjects as evenly as possible
            (the first subjects get one more); 0: each subject's own draw above decides.
        emotion_mix: the emotion frequencies clips are drawn with, a key of
            `EMOTION_MIXES`: "casme2" (CASME II's, the default) or "megc2019_composite"
            (the MEGC 2019 composite's three classes).
        seed: the root of every random stream.
        frame_size: side of the square RGB frames, in pixels.
        fps: frame rate written to generation.json (micro 200, as CASME II; macro 30).
        clip_frames: (min, max) frames from onset to offset inclusive
            (micro (30, 80): 150-400 ms at 200 fps; macro (60, 150)).
        apex_position: (min, max) position of the apex within onset..offset, as a
            fraction: real apexes are seldom in the middle.
        amplitude_px: (min, max) peak skin displacement at the apex (micro (0.5, 2),
            macro (3, 8)); drawn log-uniformly per clip. Where a tight AU (eyelids,
            dimples) would fold the skin at that amplitude, the peak is lowered until
            the strain is 0.6.
        au_radius: scale of every AU's spatial extent (micro 1.0, macro 1.5: strong
            expressions recruit more skin, and wider fields can move further unfolded).
        subject_expressiveness: 0..1, how much a subject's own expressiveness, rather
            than the clip, sets the amplitude (subjects differ, which LOSO exposes).
        au_intensity_spread: 0..1, relative per-clip jitter of each AU's intensity.
        atypical_au_probability: chance that a clip shows the AU pattern of another
            emotion than its label (CASME II labels also weigh self-reports).
        head_drift_px: largest head translation within a clip.
        head_rotation_deg: largest in-plane head rotation within a clip, and the spread
            of a clip's starting roll.
        head_scale: largest relative scale change (moving towards the camera).
        head_offset_px: spread of the head's position from one clip to the next.
        blink_probability: chance that a clip contains a blink (any emotion).
        noise_std: sensor noise standard deviation, in grey levels.
        flicker_std: frame-to-frame standard deviation of the illumination gain.
        illumination_drift: largest slow illumination gain change within a clip.
        jpeg_quality: JPEG quality of the frames (1-100).
    """

    kind: str = "micro"
    num_subjects: int = 16
    clips_per_subject: int = 10
    clips_per_subject_jitter: int = 2
    num_clips: int = 0
    emotion_mix: str = "casme2"
    seed: int = 0
    frame_size: int = 224
    fps: int | None = None
    clip_frames: tuple[int, int] | None = None
    apex_position: tuple[float, float] = (0.2, 0.7)
    amplitude_px: tuple[float, float] | None = None
    au_radius: float | None = None
    subject_expressiveness: float = 0.5
    au_intensity_spread: float = 0.4
    atypical_au_probability: float = 0.1
    head_drift_px: float = 1.5
    head_rotation_deg: float = 0.4
    head_scale: float = 0.005
    head_offset_px: float = 3.0
    blink_probability: float = 0.35
    noise_std: float = 2.0
    flicker_std: float = 0.008
    illumination_drift: float = 0.02
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.kind not in _KIND_DEFAULTS:
            raise ValueError(
                f"SyntheticSpec.kind is {self.kind!r}; use 'micro' (the CASME II-like "
                "database) or 'macro' (the pre-training corpus)."
            )
        for name, value in _KIND_DEFAULTS[self.kind].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        # Configs arrive as lists from JSON/YAML; tuples keep the spec hashable.
        for name in ("clip_frames", "apex_position", "amplitude_px"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"Invalid SyntheticSpec: {message}")

        for name in ("num_subjects", "clips_per_subject", "fps"):
            require(getattr(self, name) >= 1, f"{name} must be at least 1.")
        require(self.clips_per_subject_jitter >= 0, "clips_per_subject_jitter must be >= 0.")
        require(
            self.num_clips == 0 or self.num_clips >= self.num_subjects,
            f"num_clips {self.num_clips} must be 0 (drawn per subject) or at least "
            f"num_subjects ({self.num_subjects}).",
        )
        require(
            self.emotion_mix in EMOTION_MIXES,
            f"emotion_mix {self.emotion_mix!r} is not one of {', '.join(EMOTION_MIXES)}.",
        )
        require(self.seed >= 0, f"seed must be a non-negative integer, got {self.seed}.")
        require(
            self.frame_size >= 64,
            f"frame_size must be at least 64 px for the facial features, got {self.frame_size}.",
        )
        lo, hi = self.clip_frames
        require(
            3 <= lo <= hi,
            f"clip_frames {self.clip_frames} must be (min, max) with 3 <= min <= max: "
            "onset, apex and offset need distinct frames.",
        )
        lo, hi = self.apex_position
        require(0.0 < lo <= hi < 1.0, f"apex_position {self.apex_position} must lie in (0, 1).")
        lo, hi = self.amplitude_px
        require(0.0 < lo <= hi, f"amplitude_px {self.amplitude_px} must be 0 < min <= max.")
        require(self.au_radius > 0.0, f"au_radius must be > 0, got {self.au_radius}.")
        for name in (
            "subject_expressiveness",
            "au_intensity_spread",
            "atypical_au_probability",
            "blink_probability",
        ):
            require(0.0 <= getattr(self, name) <= 1.0, f"{name} must lie in [0, 1].")
        for name in (
            "head_drift_px",
            "head_rotation_deg",
            "head_scale",
            "head_offset_px",
            "noise_std",
            "flicker_std",
            "illumination_drift",
        ):
            require(getattr(self, name) >= 0.0, f"{name} must be >= 0.")
        require(1 <= self.jpeg_quality <= 100, "jpeg_quality must lie in 1..100.")

    @property
    def pixel_scale(self) -> float:
        """Frame pixels per reference (224-frame) pixel."""
        return self.frame_size / REFERENCE_FRAME_SIZE


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """The annotation of one clip and the expression it shows, fixed before rendering.

    Attributes:
        subject: 1-based subject number.
        index: the clip's index within its subject (its random stream).
        filename: the clip folder name, "EP{episode:02d}_{k:02d}f".
        emotion: the "Estimated Emotion" label.
        activations: the AUs shown, with relative intensities.
        amplitude: peak skin displacement at the apex, in frame pixels.
        onset, apex, offset: original frame numbers, onset < apex < offset.
    """

    subject: int
    index: int
    filename: str
    emotion: str
    activations: tuple[AUActivation, ...]
    amplitude: float
    onset: int
    apex: int
    offset: int

    @property
    def au_code(self) -> str:
        return format_au_code(self.activations)

    @property
    def num_frames(self) -> int:
        return self.offset - self.onset + 1

    @property
    def subject_dir(self) -> str:
        return f"sub{self.subject:02d}"


def _rng(spec: SyntheticSpec, purpose: int, subject: int, clip: int = 0) -> np.random.Generator:
    return np.random.default_rng([spec.seed, _KIND_STREAM[spec.kind], purpose, subject, clip])


def subject_identity(spec: SyntheticSpec, subject: int) -> Identity:
    """The face of `subject` (1-based); macro and micro subjects come from different streams."""
    return make_identity(_rng(spec, _IDENTITY, subject), spec.frame_size)


def plan_database(spec: SyntheticSpec) -> list[ClipPlan]:
    """Draws every clip's annotation and expression, sorted like the CASME II coding sheet."""
    emotion_counts = EMOTION_MIXES[spec.emotion_mix]
    emotions = list(emotion_counts)
    emotion_p = np.array([emotion_counts[e] for e in emotions], np.float64)
    emotion_p /= emotion_p.sum()
    amp_lo, amp_hi = (a * spec.pixel_scale for a in spec.amplitude_px)
    plans = []
    for subject in range(1, spec.num_subjects + 1):
        style = _rng(spec, _STYLE, subject)
        jitter = spec.clips_per_subject_jitter
        num_clips = max(1, spec.clips_per_subject + int(style.integers(-jitter, jitter + 1)))
        if spec.num_clips:
            # Dealt instead of drawn; the draw above still happens, so the subject's
            # other habits come from the same random stream either way.
            dealt, extra = divmod(spec.num_clips, spec.num_subjects)
            num_clips = dealt + (subject <= extra)
        # A subject's habits: how expressive, how strong each AU, which patterns it favours.
        expressiveness = style.uniform()
        au_gain = {au: style.uniform(0.7, 1.3) for au in sorted(AU_ANCHORS)}
        pattern_bias = {
            emotion: style.uniform(0.5, 1.5, len(patterns))
            for emotion, patterns in EMOTION_AU_PATTERNS.items()
        }
        per_episode: Counter[int] = Counter()
        for clip in range(num_clips):
            rng = _rng(spec, _PLAN, subject, clip)
            emotion = emotions[rng.choice(len(emotions), p=emotion_p)]
            pattern_emotion = emotion
            if rng.uniform() < spec.atypical_au_probability:
                pattern_emotion = emotions[rng.choice(len(emotions), p=emotion_p)]
            codes, base_p = zip(*EMOTION_AU_PATTERNS[pattern_emotion], strict=True)
            pattern_p = np.asarray(base_p) * pattern_bias[pattern_emotion]
            code = codes[rng.choice(len(codes), p=pattern_p / pattern_p.sum())]
            activations = tuple(
                dataclasses.replace(
                    act,
                    intensity=au_gain[act.au] * rng.uniform(1.0 - spec.au_intensity_spread, 1.0),
                )
                for act in parse_au_code(code)
            )
            q = (
                spec.subject_expressiveness * expressiveness
                + (1.0 - spec.subject_expressiveness) * rng.uniform()
            )
            amplitude = amp_lo * (amp_hi / amp_lo) ** q
            length = int(rng.integers(spec.clip_frames[0], spec.clip_frames[1] + 1))
            onset = int(rng.integers(1, _MAX_FIRST_FRAME + 1))
            apex_at = round(rng.uniform(*spec.apex_position) * (length - 1))
            apex = onset + min(max(apex_at, 1), length - 2)
            episode = int(rng.integers(1, 21))
            per_episode[episode] += 1
            plans.append(
                ClipPlan(
                    subject=subject,
                    index=clip,
                    filename=f"EP{episode:02d}_{per_episode[episode]:02d}f",
                    emotion=emotion,
                    activations=activations,
                    amplitude=float(amplitude),
                    onset=onset,
                    apex=apex,
                    offset=onset + length - 1,
                )
            )
    return sorted(plans, key=lambda p: (p.subject, p.filename))


# --------------------------------------------------------------------------- rendering


def expression_profile(num_frames: int, apex_index: int) -> np.ndarray:
    """Raised-cosine rise from 0 at onset to 1 at the apex and fall back to 0 at offset."""
    t = np.arange(num_frames, dtype=np.float64)
    rise = 0.5 - 0.5 * np.cos(np.pi * t / apex_index)
    fall = 0.5 + 0.5 * np.cos(np.pi * (t - apex_index) / (num_frames - 1 - apex_index))
    return np.where(t <= apex_index, rise, fall)


def _smooth_walk(rng: np.random.Generator, num_frames: int) -> np.ndarray:
    """A slow random path starting at 0, with its largest excursion in [0.3, 1]."""
    tau = np.linspace(0.0, 1.0, num_frames)[None, :]
    harmonics = np.arange(1, 4)[:, None]
    amplitude = rng.normal(size=(3, 1)) / harmonics
    phase = rng.uniform(0.0, 2.0 * np.pi, (3, 1))
    path = (amplitude * np.sin(np.pi * harmonics * tau + phase)).sum(0)
    path -= path[0]
    return path / max(float(np.abs(path).max()), 1e-9) * rng.uniform(0.3, 1.0)


def _head_poses(
    rng: np.random.Generator, spec: SyntheticSpec, num_frames: int, centre: np.ndarray
) -> np.ndarray:
    """(num_frames, 2, 3) similarity transforms from the neutral face to each frame."""
    px = spec.pixel_scale
    offset = rng.uniform(-1.0, 1.0, 2) * spec.head_offset_px * px
    shift = np.stack([_smooth_walk(rng, num_frames) for _ in range(2)], 1) * spec.head_drift_px
    angle = np.deg2rad(
        (rng.uniform(-1.0, 1.0) + _smooth_walk(rng, num_frames)) * spec.head_rotation_deg
    )
    scale = 1.0 + _smooth_walk(rng, num_frames) * spec.head_scale
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    linear = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    translation = centre + offset + shift * px - linear @ centre
    return np.concatenate([linear, translation[:, :, None]], axis=2)


def _blink_closure(rng: np.random.Generator, spec: SyntheticSpec, num_frames: int) -> np.ndarray:
    """Per-frame eyelid closure (0 open, 1 shut): at most one blink, fast down, slower up."""
    closure = np.zeros(num_frames)
    if rng.uniform() >= spec.blink_probability:
        return closure
    duration = max(3.0, rng.uniform(*_BLINK_MS) * spec.fps / 1000.0)
    start = rng.uniform(-0.5 * duration, num_frames - 0.5 * duration)
    depth = rng.uniform(0.5, 1.0)
    closing = 0.4 * duration
    t = np.arange(num_frames) - start
    down = 0.5 - 0.5 * np.cos(np.pi * t / closing)
    up = 0.5 + 0.5 * np.cos(np.pi * (t - closing) / (duration - closing))
    shape = np.where(t < closing, down, up)
    closure[(t > 0) & (t < duration)] = depth * shape[(t > 0) & (t < duration)]
    return closure


def _illumination(rng: np.random.Generator, spec: SyntheticSpec, num_frames: int) -> np.ndarray:
    """Per-frame global gain: a slow drift plus mains-lighting flicker."""
    drift = _smooth_walk(rng, num_frames) * spec.illumination_drift
    return 1.0 + drift + rng.normal(0.0, spec.flicker_std, num_frames)


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
class RenderedClip:
    """A clip's JPEG-encoded frames (onset..offset) and its (frames, 68, 2) landmarks."""

    frames: tuple[bytes, ...]
    landmarks: np.ndarray


def expression_field(plan: ClipPlan, identity: Identity, spec: SyntheticSpec) -> np.ndarray:
    """(size, size, 2) the clip's displacement field at its apex, in neutral-face pixels."""
    field = displacement_field(
        identity.landmarks, plan.activations, spec.frame_size, spec.au_radius
    )
    field *= plan.amplitude / float(np.sqrt((field**2).sum(-1)).max())
    # Only large (macro) amplitudes on tight AUs (eyelids, dimples) get here: such a
    # field would fold the skin, so its peak gives way to a bounded strain.
    strain = max_strain(field)
    if strain > _MAX_STRAIN:
        field *= _MAX_STRAIN / strain
    return field


def clip_motion(
    plan: ClipPlan, identity: Identity, spec: SyntheticSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clip's expression field, its per-frame profile and the per-frame head poses
    (neutral face -> frame), as `render_clip` draws them."""
    # The poses are the first draw of the clip's render stream, here as in render_clip.
    rng = _rng(spec, _RENDER, plan.subject, plan.index)
    field = expression_field(plan, identity, spec)
    profile = expression_profile(plan.num_frames, plan.apex - plan.onset)
    poses = _head_poses(rng, spec, plan.num_frames, identity.landmarks.mean(0))
    return field, profile, poses


def render_clip(plan: ClipPlan, identity: Identity, spec: SyntheticSpec) -> RenderedClip:
    """Renders the frames of `plan` from its subject's `identity`."""
    rng = _rng(spec, _RENDER, plan.subject, plan.index)
    size, n = spec.frame_size, plan.num_frames
    field = expression_field(plan, identity, spec)
    # The field is local to the AUs' regions: warping only the box around them is
    # much cheaper than the whole frame, and below 1/1000 px nothing is lost.
    x, y, w, h = cv2.boundingRect((np.abs(field).max(-1) > 1e-3).astype(np.uint8))
    field_box = np.array([(x, y), (x + w, y), (x, y + h), (x + w, y + h)], np.float64)
    profile = expression_profile(n, plan.apex - plan.onset)
    poses = _head_poses(rng, spec, n, identity.landmarks.mean(0))
    closure = _blink_closure(rng, spec, n)
    gains = _illumination(rng, spec, n)
    lids = eyelids(identity.landmarks)
    # The expression shifts where a frame pixel samples the neutral face by at most its
    # amplitude, so pixels showing a lid's region lie within that of the region's image.
    blink_margin = plan.amplitude + 2.0
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality]
    frames, landmarks = [], np.empty((n, 68, 2))
    for i in range(n):
        # Backward warp: frame pixel -> neutral-face point (head pose undone) -> the
        # neutral point the expression moved there -> the lid skin a blink slid there.
        inverse = cv2.invertAffineTransform(poses[i]).astype(np.float32)
        map_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
        map_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
        if profile[i] > 0.0:
            rows, cols = _frame_window(field_box, poses[i], 1.0, size)
            moved = cv2.remap(
                field,
                map_x[rows, cols],
                map_y[rows, cols],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            )
            map_x[rows, cols] -= np.float32(profile[i]) * moved[..., 0]
            map_y[rows, cols] -= np.float32(profile[i]) * moved[..., 1]
        if closure[i] > 0.0:
            for lid in lids:
                rows, cols = _frame_window(lid.blink_region(), poses[i], blink_margin, size)
                wx, wy = map_x[rows, cols], map_y[rows, cols]
                shift = blink_sample_shift(lid, wx, wy, closure[i]).astype(np.float32)
                map_x[rows, cols] = wx - shift * np.float32(lid.e_y[0])
                map_y[rows, cols] = wy - shift * np.float32(lid.e_y[1])
        image = cv2.remap(
            identity.neutral, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
        )
        noise = _sensor_noise(rng, image.shape, spec.noise_std)
        # gain * image + noise, rounded and saturated to 8 bits, in one pass.
        pixels = cv2.addWeighted(image, gains[i], noise, 1.0, 0.0, dtype=cv2.CV_8U)
        frames.append(cv2.imencode(".jpg", pixels, jpeg)[1].tobytes())
        face = blinked_landmarks(identity.landmarks, lids, closure[i])
        face = displaced_landmarks(face, field, profile[i])
        landmarks[i] = face @ poses[i][:, :2].T + poses[i][:, 2]
    return RenderedClip(frames=tuple(frames), landmarks=landmarks)


def _frame_window(
    corners: np.ndarray, pose: np.ndarray, margin: float, size: int
) -> tuple[slice, slice]:
    """Frame rows and columns covering neutral-face `corners` under `pose`, plus `margin`."""
    mapped = corners @ pose[:, :2].T + pose[:, 2]
    x0, y0 = np.floor(mapped.min(0) - margin).astype(int)
    x1, y1 = np.ceil(mapped.max(0) + margin).astype(int) + 1
    return slice(max(y0, 0), min(y1, size)), slice(max(x0, 0), min(x1, size))


def _write_clip(root: pathlib.Path, plan: ClipPlan, clip: RenderedClip) -> None:
    frame_dir = root / FRAMES_DIR / plan.subject_dir / plan.filename
    frame_dir.mkdir(parents=True)
    numbers = np.arange(plan.onset, plan.offset + 1)
    for number, data in zip(numbers, clip.frames, strict=True):
        (frame_dir / f"img{number}.jpg").write_bytes(data)
    landmark_dir = root / LANDMARKS_DIR / plan.subject_dir
    landmark_dir.mkdir(parents=True, exist_ok=True)
    write_landmarks_csv(landmark_dir / f"{plan.filename}.csv", numbers, clip.landmarks)


# --------------------------------------------------------------------------- the database


def _clip_task(spec: SyntheticSpec, plan: ClipPlan, identity: Identity, root: str) -> int:
    _write_clip(pathlib.Path(root), plan, render_clip(plan, identity, spec))
    return plan.num_frames


def generate_database(
    out_dir: str | os.PathLike,
    spec: SyntheticSpec = SyntheticSpec(),
    *,
    workers: int | None = None,
    progress: bool = True,
) -> pathlib.Path:
    """Writes the database of `spec` into `out_dir` and returns its path.

    `out_dir` is created; it may exist only as an empty directory. The database is
    written into a temporary sibling directory and renamed into place once complete,
    so an interrupted run never leaves something that looks like a database. With
    more than one worker the clips render in spawned processes, so a script calling
    this needs the usual `if __name__ == "__main__":` guard.

    Args:
        out_dir: where the database goes.
        spec: what to generate; the same spec always gives the same bytes.
        workers: processes rendering clips (None: all cores available to this process).
        progress: show a progress bar.
    """
    out = pathlib.Path(out_dir).absolute()
    _check_target(out)
    if workers is None:
        workers = available_cores()
    if workers < 1:
        raise ValueError(f"workers must be at least 1 (or None for all cores), got {workers}.")
    plans = plan_database(spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    # What a killed generator left behind (its pid is gone) is removed, never read.
    for left in out.parent.glob(f".{out.name}.partial-*"):
        pid = left.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        total_frames = _render_database(spec, plans, staging, workers, progress)
        _write_coding_sheet(staging / CODING_SHEET, plans)
        _write_manifest(staging / MANIFEST, spec, plans, total_frames)
        _check_target(out)  # it may have appeared while we were rendering
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _check_target(out: pathlib.Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"Cannot write a synthetic database to {out}: it is a file.")
    found = [name for name in (MANIFEST, CODING_SHEET, FRAMES_DIR) if (out / name).exists()]
    if found:
        raise FileExistsError(
            f"{out} already holds a database (found {', '.join(found)}). Generation never "
            "overwrites one: pass a new out_dir, or delete this one to regenerate it."
        )
    if any(out.iterdir()):
        raise FileExistsError(
            f"{out} exists and is not empty. Pass a new or empty out_dir for the synthetic "
            "database."
        )


def _render_database(
    spec: SyntheticSpec,
    plans: Sequence[ClipPlan],
    root: pathlib.Path,
    workers: int,
    progress: bool,
) -> int:
    """Renders every subject's face, then every clip under `root`; returns the frame count."""
    subjects = list(range(1, spec.num_subjects + 1))
    bar = tqdm(
        total=len(subjects) + len(plans),
        desc=f"synthetic {spec.kind} database",
        unit="task",
        disable=not progress,
    )
    with bar, worker_pool(min(workers, len(plans))) as pool:
        identities = []
        for identity in pool.map(subject_identity, [spec] * len(subjects), subjects):
            identities.append(identity)
            bar.update()
        total = 0
        for frames in pool.map(
            _clip_task,
            [spec] * len(plans),
            plans,
            [identities[plan.subject - 1] for plan in plans],
            [str(root)] * len(plans),
        ):
            total += frames
            bar.update()
        return total


# Fixed timestamps for the coding sheet's document properties and zip entries: openpyxl
# stamps both with the current time, which would make every run's bytes differ.
_SHEET_TIME = datetime.datetime(2014, 5, 8)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _write_coding_sheet(path: pathlib.Path, plans: Sequence[ClipPlan]) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(CODING_COLUMNS)
    for p in plans:
        sheet.append([p.subject, p.filename, p.onset, p.apex, p.offset, p.au_code, p.emotion])
    workbook.properties.created = workbook.properties.modified = _SHEET_TIME
    buffer = io.BytesIO()
    ExcelWriter(workbook, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)).save()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            dst.writestr(entry, src.read(info), compress_type=zipfile.ZIP_DEFLATED)


def _write_manifest(
    path: pathlib.Path, spec: SyntheticSpec, plans: Sequence[ClipPlan], total_frames: int
) -> None:
    emotions = Counter(p.emotion for p in plans)
    manifest = {
        "generator": "mer_jax.synthetic",
        "generator_version": GENERATOR_VERSION,
        "kind": spec.kind,
        "fps": spec.fps,
        "spec": dataclasses.asdict(spec),
        "counts": {
            "subjects": spec.num_subjects,
            "clips": len(plans),
            "frames": total_frames,
            "emotions": {e: emotions[e] for e in EMOTION_MIXES[spec.emotion_mix] if emotions[e]},
        },
        "layout": {
            "frames": FRAMES_DIR,
            "coding_sheet": CODING_SHEET,
            "landmarks": LANDMARKS_DIR,
            "landmark_scheme": "iBUG 68 points, frame pixels",
        },
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
