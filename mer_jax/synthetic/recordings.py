"""The synthetic databases' plan: the spec (every realism property a field, see
docs/instrument.md), each subject's face and habits, and its long recordings with their
annotated micro- and macro-expressions, from which clips are cut.

Everything is drawn from random streams keyed by (seed, kind, purpose, subject,
recording, item), so a plan depends on the spec only.
"""

import dataclasses
from collections import Counter

import numpy as np

from mer_jax.synthetic.action_units import (
    AU_ANCHORS,
    AUActivation,
    AUMorphology,
    format_au_code,
    parse_au_code,
)
from mer_jax.synthetic.faces import REFERENCE_FRAME_SIZE, Identity, make_identity

# The version of the plan and rendering: a database written by another version is
# never reused (its folder and the builders' versions name it).
GENERATOR_VERSION = 2

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

# Timing of an expression (docs/instrument.md gives each figure's source): clip length
# in seconds and apex position within onset..offset as quantile functions, knots at
# `_QUANTILES`. CASME II's coding sheet: length q10/q25/median/q75/q90 = 41/51/61/86/96
# frames at 200 fps, apex position q10/median/q90 = 0.30/0.51/0.71; SAMM: length
# q10/median/q90 = 45/78/97 frames at 200 fps, apex position 0.28/0.44/0.67. The ends (q0,
# q100) extend the outer quantiles linearly; quantiles not published are interpolated.
_QUANTILES = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
MICRO_TIMINGS = {
    "casme2": (
        np.array([31, 41, 51, 61, 86, 96, 106]) / 200.0,
        np.array([0.195, 0.30, 0.405, 0.51, 0.61, 0.71, 0.81]),
    ),
    "samm": (
        np.array([29, 45, 61.5, 78, 87.5, 97, 107]) / 200.0,
        np.array([0.20, 0.28, 0.36, 0.44, 0.555, 0.67, 0.785]),
    ),
}
# Macro-expressions last 0.5-4 s (the range usually cited after Ekman); their apex
# position keeps the range of the generator's first macro corpus.
_MACRO_SECONDS = (0.5, 4.0)
_MACRO_APEX_POSITION = (0.2, 0.7)
# Per-kind defaults for the spec fields left as None: the frame rate (CASME II and
# SAMM 200 fps; CAS(ME)^2 and the macro corpora 30 fps).
_KIND_DEFAULTS = {"micro": {"fps": 200}, "macro": {"fps": 30}}
# Expression strength per expression type: peak skin displacement (px, reference frame)
# and the AU field's spatial scale (strong expressions recruit more skin, and a wider
# field can move further without folding).
_AMPLITUDE_PX = {"micro": (0.5, 2.0), "macro": (3.0, 8.0)}
_AU_RADIUS = {"micro": 1.0, "macro": 1.5}
# Random streams: (seed, kind, purpose, subject, recording, item). A fixed length matters:
# SeedSequence pads with zeros, so [a, b] and [a, b, 0] would be the same stream.
_KIND_STREAM = {"micro": 1, "macro": 2}
_IDENTITY, _STYLE, _PLAN, _MOTION, _FRAME = range(5)
# Blink durations (closing plus reopening) of people at rest.
_BLINK_MS = (100.0, 250.0)
# Largest skin strain (Jacobian norm) of an expression: well clear of folding at 1.
_MAX_STRAIN = 0.6
# The shortest neutral stretch before, between and after expressions.
_MIN_GAP_S = 1.0
# Focal length of the virtual camera, in frame widths: out-of-plane rotation of the
# (planar) face becomes the perspective change it would make through this lens.
_FOCAL_FRAMES = 4.0
_MOTION_HZ = (0.05, 0.5)


# The spec's nuisance fields (each off at 0): motion and light that are no expression.
_NUISANCE = (
    "head_drift_px",
    "head_rotation_deg",
    "head_out_of_plane_deg",
    "head_scale",
    "head_offset_px",
    "blinks_per_minute",
    "noise_std",
    "flicker_std",
    "illumination_drift",
)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a synthetic database; equal specs give identical bytes.

    Each subject is filmed in one or more long recordings (a neutral face, head motion,
    blinks, illumination changes, and micro- and macro-expressions with long neutral
    stretches between them); the database's clips are cut from the recordings by their
    annotated onset..offset, as the real databases were made. docs/instrument.md lists
    every property with its value and source; each has a switch here that removes it.

    Pixel quantities are for the reference 224 x 224 frame (inter-ocular distance
    ~50 px, which the builder's 128 x 128 alignment maps to ~51 px) and scale with
    `frame_size`. Fields left as None take the `kind`'s default when the spec is
    created, so build a macro spec as `SyntheticSpec(kind="macro", ...)`.

    Attributes:
        kind: "micro" (CASME II-like: the clips are the micro-expressions, 200 fps) or
            "macro" (a posed-expression corpus for MA2MI pre-training, with its own
            identities: the clips are the macro-expressions, 30 fps).
        num_subjects: number of subjects (sub01, sub02, ...).
        clips_per_subject: mean clips (expressions of the kind) per subject (9, CASME
            II's median, keeps the default build at generator 1's size; CASME II's mean is
            9.8).
        clip_count_shape: shape of the Gamma distribution of a subject's clip count
            (mean `clips_per_subject`; CASME II's median 9 and mean 9.8 give 4); 0: every
            subject has exactly `clips_per_subject`.
        num_clips: the exact total of clips, shared among the subjects in proportion to
            their drawn counts (evenly, the first subjects getting one more, when
            `clip_count_shape` is 0); 0: each subject's own draw above decides.
        emotion_mix: the emotion frequencies clips are drawn with, a key of
            `EMOTION_MIXES`: "casme2" (CASME II's, the default) or "megc2019_composite"
            (the MEGC 2019 composite's three classes).
        exact_emotions: the clips' emotions add up to the mix's frequencies exactly
            (scaled to the number of clips, largest remainders rounded up), dealt to the
            subjects by their own emotion preferences; False: each clip draws its emotion,
            so a small build's rare classes can stray far from the mix (the default
            build's 5 repression and 7 surprise clips against CASME II's 27 and 25).
        subject_emotion_concentration: how evenly a subject's clips spread over the
            emotions: each subject's emotion frequencies are the mix's times Gamma(c)
            weights, so a small c leaves most subjects with two or three classes, as in
            CASME II and SAMM; 0: every subject draws from the mix itself.
        seed: the root of every random stream.
        frame_size: side of the square RGB frames, in pixels.
        fps: frame rate of the recordings (micro 200, as CASME II; macro 30).
        timing: the micro-expressions' length and apex position: "casme2" or "samm"
            (their coding sheets' quantiles), or "fixed" (CASME II's median length with
            the apex in the middle).
        multi_peak_probability: chance that an expression's time course has a second,
            lower peak (real time courses are seldom one clean bump).
        apex_tolerance: the annotated apex is a frame, drawn uniformly, whose intensity is
            at least this fraction of the true peak's (coders cannot rank frames that
            close); 1: the annotated apex is the true peak.
        macro_per_micro: macro-expressions per micro-expression in the recordings.
        intervals_per_recording: mean expressions per recording (sets their number).
        neutral_gap_s: mean neutral stretch between expressions beyond the shortest 1 s.
        amplitude_scale: multiplies the peak displacements (micro 0.5-2 px, macro 3-8
            px, drawn log-uniformly per expression). Where a tight AU (eyelids,
            dimples) would fold the skin, the peak is lowered until the strain is 0.6.
        au_morphology_spread: scale of how each subject's AUs differ from the template
            (anchor shift, extent, direction; `action_units.AUMorphology`); 0: one
            morphology for every face.
        subject_expressiveness: 0..1, how much a subject's own expressiveness, rather
            than the clip, sets the amplitude (subjects differ, which LOSO exposes).
        au_intensity_spread: 0..1, relative per-clip jitter of each AU's intensity.
        atypical_au_probability: chance that a clip shows the AU pattern of another
            emotion than its label (CASME II labels also weigh self-reports).
        head_drift_px: largest head translation within a recording.
        head_rotation_deg: largest in-plane head rotation within a recording, and the
            spread of a recording's starting roll.
        head_out_of_plane_deg: largest yaw and pitch within a recording.
        head_scale: largest relative scale change (moving towards the camera).
        head_offset_px: spread of the head's position from one recording to the next.
        blinks_per_minute: mean blink rate (people at rest blink 15-20 times a minute).
        noise_std: sensor noise standard deviation, in grey levels.
        flicker_std: frame-to-frame standard deviation of the illumination gain.
        illumination_drift: largest slow illumination gain change within a recording.
        alignment_jitter_iod: (common, point) standard deviations, in inter-ocular
            distances, of the landmark noise written to the sidecars: a shift of the whole
            face per frame and independent noise per point, as the project's dlib
            pipeline measured on a real video (docs/instrument.md); (0, 0): true landmarks.
        jpeg_quality: JPEG quality of the frames (1-100).
    """

    kind: str = "micro"
    num_subjects: int = 16
    clips_per_subject: int = 9
    clip_count_shape: float = 4.0
    num_clips: int = 0
    emotion_mix: str = "casme2"
    exact_emotions: bool = False
    subject_emotion_concentration: float = 0.5
    seed: int = 0
    frame_size: int = 224
    fps: int | None = None
    timing: str = "casme2"
    multi_peak_probability: float = 0.3
    apex_tolerance: float = 0.9
    macro_per_micro: float = 2.2
    intervals_per_recording: float = 3.6
    neutral_gap_s: float = 6.0
    amplitude_scale: float = 1.0
    au_morphology_spread: float = 1.0
    subject_expressiveness: float = 0.5
    au_intensity_spread: float = 0.4
    atypical_au_probability: float = 0.1
    head_drift_px: float = 1.5
    head_rotation_deg: float = 0.4
    head_out_of_plane_deg: float = 1.0
    head_scale: float = 0.005
    head_offset_px: float = 3.0
    blinks_per_minute: float = 17.5
    noise_std: float = 2.0
    flicker_std: float = 0.008
    illumination_drift: float = 0.02
    alignment_jitter_iod: tuple[float, float] = (0.0048, 0.0092)
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
        object.__setattr__(self, "alignment_jitter_iod", tuple(self.alignment_jitter_iod))
        self._validate()

    def _validate(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"Invalid SyntheticSpec: {message}")

        for name in ("num_subjects", "clips_per_subject", "fps"):
            require(getattr(self, name) >= 1, f"{name} must be at least 1.")
        require(
            self.num_clips == 0 or self.num_clips >= self.num_subjects,
            f"num_clips {self.num_clips} must be 0 (drawn per subject) or at least "
            f"num_subjects ({self.num_subjects}).",
        )
        require(
            self.emotion_mix in EMOTION_MIXES,
            f"emotion_mix {self.emotion_mix!r} is not one of {', '.join(EMOTION_MIXES)}.",
        )
        require(
            self.timing in (*MICRO_TIMINGS, "fixed"),
            f"timing {self.timing!r} is not one of {', '.join((*MICRO_TIMINGS, 'fixed'))}.",
        )
        require(self.seed >= 0, f"seed must be a non-negative integer, got {self.seed}.")
        require(
            self.frame_size >= 64,
            f"frame_size must be at least 64 px for the facial features, got {self.frame_size}.",
        )
        require(self.intervals_per_recording >= 1.0, "intervals_per_recording must be >= 1.")
        require(self.amplitude_scale > 0.0, "amplitude_scale must be > 0.")
        require(0.0 < self.apex_tolerance <= 1.0, "apex_tolerance must lie in (0, 1].")
        require(len(self.alignment_jitter_iod) == 2, "alignment_jitter_iod is (common, point).")
        for name in (
            "subject_expressiveness",
            "au_intensity_spread",
            "atypical_au_probability",
            "multi_peak_probability",
        ):
            require(0.0 <= getattr(self, name) <= 1.0, f"{name} must lie in [0, 1].")
        for name in (
            "clip_count_shape",
            "subject_emotion_concentration",
            "macro_per_micro",
            "neutral_gap_s",
            "au_morphology_spread",
            *_NUISANCE,
        ):
            require(getattr(self, name) >= 0.0, f"{name} must be >= 0.")
        require(min(self.alignment_jitter_iod) >= 0.0, "alignment_jitter_iod must be >= 0.")
        require(1 <= self.jpeg_quality <= 100, "jpeg_quality must lie in 1..100.")

    @property
    def pixel_scale(self) -> float:
        """Frame pixels per reference (224-frame) pixel."""
        return self.frame_size / REFERENCE_FRAME_SIZE

    def without_nuisance(self) -> "SyntheticSpec":
        """This spec with every nuisance switched off: no head motion, blinks,
        illumination change, flicker, sensor noise or alignment jitter. What moves is the
        expressions alone (JPEG compression stays: `jpeg_quality`)."""
        off = dict.fromkeys(_NUISANCE, 0.0)
        return dataclasses.replace(self, **off, alignment_jitter_iod=(0.0, 0.0))


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: compare by identity
class Expression:
    """One annotated interval of a recording and the expression it shows.

    Attributes:
        kind: "micro" or "macro".
        emotion: the "Estimated Emotion" label.
        activations: the AUs shown, with relative intensities.
        amplitude: peak skin displacement at the true peak, in frame pixels.
        radius: the AU field's spatial scale (`action_units.displacement_field`).
        onset, apex, offset: annotated frame numbers of the recording, onset < apex <
            offset; the motion starts at onset and ends at offset, but the annotated
            apex may be off the true peak (`apex_tolerance`).
        profile: the expression's intensity at onset..offset, peaking at 1.
    """

    kind: str
    emotion: str
    activations: tuple[AUActivation, ...]
    amplitude: float
    radius: float
    onset: int
    apex: int
    offset: int
    profile: np.ndarray

    @property
    def au_code(self) -> str:
        return format_au_code(self.activations)

    @property
    def num_frames(self) -> int:
        return self.offset - self.onset + 1

    @property
    def peak(self) -> int:
        """The frame number of the true peak."""
        return self.onset + int(np.argmax(self.profile))


@dataclasses.dataclass(frozen=True)
class Recording:
    """One long recording of a subject: its frames 1..num_frames and its expressions.

    Attributes:
        subject: 1-based subject number.
        index: 1-based recording number of the subject (the clips' episode).
        num_frames: length in frames.
        expressions: non-overlapping expressions in time order.
    """

    subject: int
    index: int
    num_frames: int
    expressions: tuple[Expression, ...]

    @property
    def name(self) -> str:
        return f"sub{self.subject:02d}_rec{self.index:02d}"


@dataclasses.dataclass(frozen=True)
class ClipPlan:
    """One clip of the database: an expression of the spec's kind, cut from its recording.

    Attributes:
        recording: the recording it is cut from.
        expression: its index in `recording.expressions`.
        filename: the clip folder name, "EP{recording:02d}_{k:02d}f".
    """

    recording: Recording
    expression: int
    filename: str

    @property
    def shown(self) -> Expression:
        return self.recording.expressions[self.expression]

    @property
    def subject(self) -> int:
        return self.recording.subject

    @property
    def emotion(self) -> str:
        return self.shown.emotion

    @property
    def au_code(self) -> str:
        return self.shown.au_code

    @property
    def onset(self) -> int:
        return self.shown.onset

    @property
    def apex(self) -> int:
        return self.shown.apex

    @property
    def offset(self) -> int:
        return self.shown.offset

    @property
    def num_frames(self) -> int:
        return self.shown.num_frames

    @property
    def subject_dir(self) -> str:
        return f"sub{self.subject:02d}"


def _rng(
    spec: SyntheticSpec, purpose: int, subject: int, recording: int = 0, item: int = 0
) -> np.random.Generator:
    return np.random.default_rng(
        [spec.seed, _KIND_STREAM[spec.kind], purpose, subject, recording, item]
    )


def subject_identity(spec: SyntheticSpec, subject: int) -> Identity:
    """The face of `subject` (1-based); macro and micro subjects come from different streams."""
    return make_identity(_rng(spec, _IDENTITY, subject), spec.frame_size)


@dataclasses.dataclass(frozen=True)
class _Habits:
    """What a subject brings to every recording: expressiveness, AU gains and morphology,
    favoured AU patterns and emotions."""

    expressiveness: float
    au_gain: dict[int, float]
    morphology: dict[int, AUMorphology]
    pattern_bias: dict[str, np.ndarray]
    emotion_p: np.ndarray


def subject_habits(spec: SyntheticSpec, subject: int) -> _Habits:
    """The habits of `subject`, drawn from its own stream."""
    style = _rng(spec, _STYLE, subject)
    mix = EMOTION_MIXES[spec.emotion_mix]
    emotion_p = np.array(list(mix.values()), np.float64)
    emotion_p /= emotion_p.sum()
    # Dirichlet around the mix: pooled over subjects the classes keep the mix's frequencies.
    weights = style.gamma(max(spec.subject_emotion_concentration, 1e-9) * len(mix) * emotion_p)
    if spec.subject_emotion_concentration > 0:
        emotion_p = weights + 1e-12
    return _Habits(
        expressiveness=float(style.uniform()),
        au_gain={au: float(style.uniform(0.7, 1.3)) for au in sorted(AU_ANCHORS)},
        morphology={
            au: AUMorphology.draw(style, spec.au_morphology_spread) for au in sorted(AU_ANCHORS)
        },
        pattern_bias={
            emotion: style.uniform(0.5, 1.5, len(patterns))
            for emotion, patterns in EMOTION_AU_PATTERNS.items()
        },
        emotion_p=emotion_p / emotion_p.sum(),
    )


def _clip_counts(spec: SyntheticSpec) -> list[int]:
    """Each subject's number of clips (expressions of the spec's kind)."""
    counts = []
    for subject in range(1, spec.num_subjects + 1):
        rng = _rng(spec, _PLAN, subject)
        drawn = spec.clips_per_subject
        if spec.clip_count_shape > 0:
            scale = spec.clips_per_subject / spec.clip_count_shape
            drawn = round(rng.gamma(spec.clip_count_shape, scale))
        counts.append(max(1, drawn))
    if spec.num_clips:
        counts = _apportion(spec.num_clips, counts)
    return counts


def _apportion(total: int, weights: list[int]) -> list[int]:
    """`total` shared in proportion to `weights`, at least 1 each (total >= len(weights)):
    the floors of the shares, then one more to the largest remainders (the first subjects
    on a tie, so equal weights deal evenly with the first subjects getting one more)."""
    shares = np.asarray(weights, np.float64) * total / sum(weights)
    dealt = np.maximum(1, np.floor(shares).astype(np.int64))
    remainders = shares - np.floor(shares)
    for index in np.argsort(-remainders, kind="stable")[: max(0, total - int(dealt.sum()))]:
        dealt[index] += 1
    while dealt.sum() > total:  # the raises to 1 overshot: take from the largest
        dealt[int(np.argmax(dealt))] -= 1
    return [int(d) for d in dealt]


def expression_profile(
    num_frames: int, peak: int, second: tuple[float, float, float] | None = None
) -> np.ndarray:
    """Intensity over onset..offset: a raised-cosine rise from 0 at onset to the peak and
    fall back to 0 at offset, plus an optional second bump (position, height, width in
    frames) inside the same interval; the largest value is 1."""
    t = np.arange(num_frames, dtype=np.float64)
    rise = 0.5 - 0.5 * np.cos(np.pi * t / peak)
    fall = 0.5 + 0.5 * np.cos(np.pi * (t - peak) / (num_frames - 1 - peak))
    profile = np.where(t <= peak, rise, fall)
    if second is not None:
        position, height, width = second
        # The bump fades towards onset and offset, so both stay at zero.
        envelope = np.sin(np.pi * t / (num_frames - 1))
        profile = profile + height * envelope * np.exp(-0.5 * ((t - position) / width) ** 2)
    return profile / profile.max()


def _draw_expression(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    habits: _Habits,
    kind: str,
    onset: int,
    emotion: str | None = None,
) -> Expression:
    """One expression of type `kind` starting at frame `onset` of its recording, of
    `emotion` where one was dealt (`exact_emotions`), else of a drawn one."""
    mix = EMOTION_MIXES[spec.emotion_mix]
    emotions = list(mix)
    if emotion is None:
        emotion = emotions[rng.choice(len(emotions), p=habits.emotion_p)]
    pattern_emotion = emotion
    if rng.uniform() < spec.atypical_au_probability:
        pattern_emotion = emotions[rng.choice(len(emotions), p=habits.emotion_p)]
    codes, base_p = zip(*EMOTION_AU_PATTERNS[pattern_emotion], strict=True)
    pattern_p = np.asarray(base_p) * habits.pattern_bias[pattern_emotion]
    code = codes[rng.choice(len(codes), p=pattern_p / pattern_p.sum())]
    activations = tuple(
        dataclasses.replace(
            act,
            intensity=habits.au_gain[act.au] * rng.uniform(1.0 - spec.au_intensity_spread, 1.0),
        )
        for act in parse_au_code(code)
    )
    q = (
        spec.subject_expressiveness * habits.expressiveness
        + (1.0 - spec.subject_expressiveness) * rng.uniform()
    )
    amp_lo, amp_hi = (a * spec.pixel_scale * spec.amplitude_scale for a in _AMPLITUDE_PX[kind])
    amplitude = amp_lo * (amp_hi / amp_lo) ** q
    u = rng.uniform(size=2)
    if kind == "macro":
        seconds = _MACRO_SECONDS[0] + u[0] * (_MACRO_SECONDS[1] - _MACRO_SECONDS[0])
        position = _MACRO_APEX_POSITION[0] + u[1] * np.ptp(_MACRO_APEX_POSITION)
        if spec.timing == "fixed":
            seconds, position = float(np.mean(_MACRO_SECONDS)), 0.5
    else:
        lengths, positions = MICRO_TIMINGS["casme2" if spec.timing == "fixed" else spec.timing]
        seconds = float(np.interp(u[0], _QUANTILES, lengths))
        position = float(np.interp(u[1], _QUANTILES, positions))
        if spec.timing == "fixed":
            seconds, position = float(lengths[3]), 0.5
    length = max(5, round(seconds * spec.fps))
    peak = min(max(round(position * (length - 1)), 1), length - 2)
    second = None
    if rng.uniform() < spec.multi_peak_probability:
        second = (
            float(rng.uniform(0.1, 0.9) * (length - 1)),
            float(rng.uniform(0.3, 0.8)),
            float(rng.uniform(0.05, 0.15) * length),
        )
    profile = expression_profile(length, peak, second)
    near_peak = np.flatnonzero(profile[1:-1] >= spec.apex_tolerance - 1e-12) + 1
    apex_index = int(near_peak[rng.integers(len(near_peak))])
    return Expression(
        kind=kind,
        emotion=emotion,
        activations=activations,
        amplitude=float(amplitude),
        radius=_AU_RADIUS[kind],
        onset=onset,
        apex=onset + apex_index,
        offset=onset + length - 1,
        profile=profile,
    )


def deal_emotions(spec: SyntheticSpec, counts: list[int]) -> list[list[str]]:
    """Each subject's clip emotions when `spec.exact_emotions`: the mix's frequencies
    scaled to sum(counts) (largest remainders), dealt one clip at a time in a random order
    to a subject drawn with probability (clips it still has to fill) x (its preference for
    that emotion, `subject_habits`), so the totals are exact while subjects keep showing
    only a few classes."""
    mix = EMOTION_MIXES[spec.emotion_mix]
    totals = _apportion(sum(counts), list(mix.values()))
    rng = _rng(spec, _PLAN, 0, 0, 3)
    labels = np.repeat(np.arange(len(mix)), totals)
    preference = np.stack([subject_habits(spec, s).emotion_p for s in range(1, len(counts) + 1)])
    room = np.asarray(counts, np.float64)
    dealt: list[list[str]] = [[] for _ in counts]
    for label in labels[rng.permutation(len(labels))]:
        weights = room * preference[:, label]
        if weights.sum() <= 0:  # no subject with room likes it: any subject with room
            weights = room.copy()
        subject = int(rng.choice(len(counts), p=weights / weights.sum()))
        room[subject] -= 1
        dealt[subject].append(list(mix)[label])
    return dealt


def plan_recordings(
    spec: SyntheticSpec, subject: int, num_clips: int, emotions: list[str] | None = None
) -> list[Recording]:
    """The recordings of `subject`, holding `num_clips` expressions of the spec's kind and
    the other kind's in the ratio `macro_per_micro`, in time order with neutral gaps; the
    spec's kind takes `emotions` in order where given (`deal_emotions`)."""
    rng = _rng(spec, _PLAN, subject, 0, 1)
    habits = subject_habits(spec, subject)
    ratio = spec.macro_per_micro if spec.kind == "micro" else 1.0 / max(spec.macro_per_micro, 1e-9)
    other_kind = "macro" if spec.kind == "micro" else "micro"
    num_other = int(rng.poisson(ratio * num_clips)) if spec.macro_per_micro > 0 else 0
    kinds = np.array([spec.kind] * num_clips + [other_kind] * num_other)
    kinds = kinds[rng.permutation(len(kinds))]
    num_recordings = max(1, round(len(kinds) / spec.intervals_per_recording))
    # Every recording gets at least one expression; the rest fall where they may.
    owner = np.concatenate(
        [np.arange(num_recordings), rng.integers(num_recordings, size=len(kinds) - num_recordings)]
    )
    dealt = iter(emotions or ())
    recordings = []
    for index in range(1, num_recordings + 1):
        stream = _rng(spec, _PLAN, subject, index, 2)
        frame = 1
        expressions = []
        for kind in kinds[owner == index - 1]:
            frame += round((_MIN_GAP_S + stream.exponential(spec.neutral_gap_s)) * spec.fps)
            emotion = next(dealt, None) if kind == spec.kind else None
            expression = _draw_expression(stream, spec, habits, str(kind), frame, emotion)
            expressions.append(expression)
            frame = expression.offset + 1
        frame += round((_MIN_GAP_S + stream.exponential(spec.neutral_gap_s)) * spec.fps)
        recordings.append(Recording(subject, index, frame - 1, tuple(expressions)))
    return recordings


def all_recordings(spec: SyntheticSpec) -> list[Recording]:
    """Every recording of the spec, subject by subject: what `synthetic_lv` keeps whole."""
    counts = _clip_counts(spec)
    dealt = deal_emotions(spec, counts) if spec.exact_emotions else [None] * len(counts)
    return [
        recording
        for subject, num_clips in enumerate(counts, start=1)
        for recording in plan_recordings(spec, subject, num_clips, dealt[subject - 1])
    ]


def plan_database(spec: SyntheticSpec) -> list[ClipPlan]:
    """Every clip: each expression of the spec's kind in every subject's recordings, cut
    by its annotated onset..offset, sorted like the CASME II coding sheet."""
    plans = []
    for recording in all_recordings(spec):
        k = 0
        for i, expression in enumerate(recording.expressions):
            if expression.kind == spec.kind:
                k += 1
                filename = f"EP{recording.index:02d}_{k:02d}f"
                plans.append(ClipPlan(recording=recording, expression=i, filename=filename))
    return sorted(plans, key=lambda p: (p.subject, p.filename))


def database_summary(spec: SyntheticSpec) -> dict:
    """What `generate_database(spec)` would write, from the plans alone (nothing rendered):
    the clips cut from the recordings, per subject and emotion, and the recordings'
    micro and macro intervals."""
    plans = plan_database(spec)
    recordings = all_recordings(spec)
    intervals = Counter(e.kind for r in recordings for e in r.expressions)
    per_subject = Counter(p.subject_dir for p in plans)
    classes = {s: len({p.emotion for p in plans if p.subject_dir == s}) for s in per_subject}
    emotions = Counter(p.emotion for p in plans)
    return {
        "generator_version": GENERATOR_VERSION,
        "kind": spec.kind,
        "fps": spec.fps,
        "clips": len(plans),
        "clips_cut_from": f"{len(recordings)} recordings by their annotated onset..offset",
        "subjects": spec.num_subjects,
        "clips_per_subject": dict(sorted(per_subject.items())),
        "emotions_per_subject": dict(sorted(classes.items())),
        "emotions": {e: emotions[e] for e in EMOTION_MIXES[spec.emotion_mix] if emotions[e]},
        "recordings": len(recordings),
        "recording_minutes": round(sum(r.num_frames for r in recordings) / spec.fps / 60.0, 1),
        "intervals": {"micro": intervals["micro"], "macro": intervals["macro"]},
        "frames": sum(p.num_frames for p in plans),
    }


# --------------------------------------------------------------------------- motion
