"""The one motion extractor for long videos: what a spotter reads of a recording.

Every long-video builder (synthetic_lv and the real long-video databases) and prediction
on one's own video call `video_motion`, so a model sees the same features at training and
at use. What it stores, at low resolution as the MEGC spotting baselines do (`MotionSpec`):
a frame every `step_ms` is cropped to the aligned face (`crop_size`, grayscale), and the
flow from each sampled frame to the one `span` samples later is area-pooled to
`grid` x `grid` x 2 and kept as float16; the head's own motion is removed where the
motion is read (`without_head_motion`; `motion_score`, the training-free score of a
position; `normalised_motion`, what the learned spotter reads).

Frames come in bounded chunks (`video_chunks`, `folder_chunks`: only the sampled frames
are converted, one chunk held at a time), so an hour of 200 fps video costs the memory
of one chunk and of its pooled flows (a few MB).

The face is aligned once, on the first sampled frame where one is found, and one
alignment serves every frame after it (alignment adds no motion). It is looked for again
every `check_s` seconds: when it has moved far (`MOVED_FAR`: its eyes shifted by half
their distance, scaled by a quarter or turned by 15 degrees) it is aligned anew
there; when it is gone, every sampled frame is searched until it comes back, and the
frames since it was last seen count as faceless (a loss is only seen at a check). A
position whose flow starts or ends on a faceless frame, or spans a re-alignment, is
`valid` False, its motion zero, and `notes` say what happened ("face lost at frame
1200, found again at frame 1630"): a gap, not a crash. A recording without any face is a
one-line UserError; a video that ends before its container says is a note.
"""

import dataclasses
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from mer_jax.errors import UserError
from mer_jax.preprocess.face import (
    EYE_LINE,
    NoFaceError,
    align_from_landmarks,
    resize_affine,
    shared_landmarker,
    warp_crop,
)
from mer_jax.preprocess.flow import FLOW_METHODS, compute_flow, resize_flow
from mer_jax.preprocess.video import (
    FrameChunk,
    chunked,
    decode_frames,
    folder_frame,
    probe_video,
)

# Sampled frames held at once by the chunk readers.
CHUNK = 64
# How far the face may move from where it was aligned before it is aligned anew: its eye
# midpoint by this fraction of the eye distance, its scale by this factor, or it turns by
# this many degrees. Below these, the head's motion stays a near-uniform shift of the
# grid, which the median removes. Tighter (a quarter of the eye distance), dlib's jitter
# on a small face plus a slow drift re-aligned the synthetic video of
# benchmarks/spotting_preprocess.py many times a minute, each re-alignment costing the
# positions whose flow spans it.
MOVED_FAR = (0.5, 1.25, 15.0)

LocateFace = Callable[[np.ndarray], np.ndarray | None]


@dataclasses.dataclass(frozen=True)
class MotionSpec:
    """What is stored per long video (the module docstring).

    Attributes:
        step_ms: a sampled frame every step_ms milliseconds.
        span: the flow goes from sample i to sample i + span.
        crop_size: side of the aligned face crop the flow is computed on.
        grid: the flow is area-pooled to grid x grid cells.
        flow_method: one of `mer_jax.preprocess.flow.FLOW_METHODS`.
    """

    step_ms: int = 80
    span: int = 2
    crop_size: int = 64
    grid: int = 8
    flow_method: str = "dis"

    def __post_init__(self) -> None:
        if min(self.step_ms, self.span, self.crop_size, self.grid) < 1:
            raise ValueError(f"every size of a MotionSpec must be at least 1: {self}")
        if self.flow_method not in FLOW_METHODS:
            raise ValueError(f"flow_method must be one of {FLOW_METHODS}: {self.flow_method!r}")

    def step_frames(self, fps: float) -> int:
        """Frames between two sampled frames at `fps`."""
        return max(1, round(self.step_ms * fps / 1000.0))

    @classmethod
    def from_metadata(cls, metadata: dict) -> "MotionSpec":
        """The spec a build's metadata records (its fields by name; step_ms from
        step_frames and fps where the build records those)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        found = {name: metadata[name] for name in fields if name in metadata}
        if "step_ms" not in found and "step_frames" in metadata:
            found["step_ms"] = round(1000.0 * int(metadata["step_frames"]) / float(metadata["fps"]))
        return cls(**found)


@dataclasses.dataclass(frozen=True)
class VideoMotion:
    """The motion of one long video.

    Attributes:
        frame_numbers: (N,) int32, the sampled frames as the source numbers them.
        motion: (N - span, G, G, 2) float16, the pooled flow from frame_numbers[i] to
            frame_numbers[i + span] (zero where not valid).
        valid: (N - span,) bool, False where the face was missing at either end of the
            flow or was aligned anew inside it.
        notes: what happened on the way, one line each (gaps, re-alignments, a file that
            ended early).
    """

    frame_numbers: np.ndarray
    motion: np.ndarray
    valid: np.ndarray
    notes: list[str]


class ChunkSource:
    """Chunks of a recording that may have something to say once walked (`notes`: a
    video that ended before its container said). Iterating it walks it anew."""

    def __init__(
        self, walk: Callable[[list[str]], Iterator[FrameChunk]], source: str, samples: int = 0
    ) -> None:
        self._walk = walk
        self.source = source
        self.samples = samples  # the sampled frames expected, where known (for progress)
        self.notes: list[str] = []

    def __iter__(self) -> Iterator[FrameChunk]:
        self.notes = []
        return self._walk(self.notes)


def video_chunks(path: Path, step: int, chunk: int = CHUNK) -> ChunkSource:
    """Every `step`-th frame of a video (0-based decoding order), `chunk` at a time; a
    video that stops decoding before the frame count its container gives leaves a note.

    Raises (when walked):
        UserError: the video cannot be opened or has no decodable frame.
    """
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}.")
    _, announced = probe_video(path, None)

    def walk(notes: list[str]) -> Iterator[FrameChunk]:
        decoded = 0
        # A range answers `in` by arithmetic: the sampled frames of a video of any length.
        frames = decode_frames(path, range(0, 2**62, step), None, "rgb")
        for index, frame in frames:
            decoded = index + 1
            yield (index, frame)
        if announced and decoded < announced:
            notes.append(
                f"the file ended early: {decoded} frames decoded of the {announced} its "
                "container announces (truncated or damaged); the decoded frames are used"
            )

    return ChunkSource(
        lambda notes: chunked(str(path), walk(notes), chunk), str(path), -(-announced // step)
    )


def folder_chunks(
    frames: Sequence[tuple[int, Path]], step: int, chunk: int = CHUNK
) -> ChunkSource:
    """Every `step`-th of a recording's frame images (the (number, path) pairs, sorted by
    number; a missing file is a missing frame: the step counts the images there are),
    `chunk` at a time.

    Raises (when walked):
        UserError: an image that cannot be read, or frames of different sizes.
    """
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}.")
    ordered = sorted(frames)
    source = str(ordered[0][1].parent) if ordered else "an empty frame list"

    def walk(notes: list[str]) -> Iterator[FrameChunk]:
        del notes  # a folder has nothing more to say than its frames
        pairs = ((number, folder_frame(path)) for number, path in ordered[::step])
        return chunked(source, pairs, chunk)

    return ChunkSource(walk, source, len(ordered[::step]))


def dlib_face(image: np.ndarray) -> np.ndarray | None:
    """The (68, 2) landmarks of the largest face dlib finds in an RGB image, or None."""
    landmarker = shared_landmarker()
    box = landmarker.detect(image)
    return None if box is None else landmarker.predict(image, box)


def _eyes(landmarks: np.ndarray) -> tuple[complex, complex]:
    points = np.asarray(landmarks, np.float64)
    return complex(*points[36:42].mean(0)), complex(*points[42:48].mean(0))


def moved_far(aligned: np.ndarray, now: np.ndarray) -> bool:
    """Whether the face of landmarks `now` is far from where it was aligned (`MOVED_FAR`)."""
    (left, right), (new_left, new_right) = _eyes(aligned), _eyes(now)
    gap = right - left
    similarity = (new_right - new_left) / gap
    shift = abs((new_left + new_right) / 2 - (left + right) / 2) / abs(gap)
    far_shift, far_scale, far_degrees = MOVED_FAR
    return (
        shift > far_shift
        or abs(math.log(abs(similarity))) > math.log(far_scale)
        or abs(math.degrees(math.atan2(similarity.imag, similarity.real))) > far_degrees
    )


class _Tracker:
    """Where the face is: the alignment in use, and each sampled frame's alignment (its
    index, or -1 for no face), corrected after the fact when a check finds it gone."""

    def __init__(self, check_every: int) -> None:
        self.check_every = check_every
        self.affine: np.ndarray | None = None
        self.aligned_on: np.ndarray | None = None  # the landmarks of the alignment in use
        self.alignments = 0
        self.segment: list[int] = []
        self.last_check = -check_every
        self.last_seen = -1  # the last sample where a check saw the face
        self.lost_at: int | None = None  # the first sample counted faceless
        self.events: list[tuple[str, int, int]] = []  # (kind, sample, sample)

    def wants_check(self, sample: int) -> bool:
        return self.affine is None or sample - self.last_check >= self.check_every

    def checked(self, sample: int, landmarks: np.ndarray | None, crop_size: int) -> None:
        self.last_check = sample
        if landmarks is None:
            if self.affine is not None:  # gone since it was last seen
                self.lost_at = self.last_seen + 1
                for past in range(self.lost_at, sample):
                    self.segment[past] = -1
                self.affine = self.aligned_on = None
            return
        if self.affine is None or moved_far(self.aligned_on, landmarks):
            if self.affine is not None:
                self.events.append(("moved", sample, sample))
            elif self.lost_at is not None:
                self.events.append(("lost", self.lost_at, sample))
            elif sample > 0:
                self.events.append(("late", sample, sample))
            self.lost_at = None
            self.affine = align_from_landmarks(landmarks, crop_size)
            self.aligned_on = np.asarray(landmarks, np.float64)
            self.alignments += 1
        self.last_seen = sample


def video_motion(
    chunks: Iterable[FrameChunk],
    spec: MotionSpec,
    locate_face: LocateFace = dlib_face,
    *,
    check_s: float = 1.0,
    source: str | None = None,
    progress: bool = False,
) -> VideoMotion:
    """The motion of one long video from its frames (module docstring).

    Args:
        chunks: the sampled frames in order, e.g. `video_chunks` or `folder_chunks`; a
            chunk that carries landmarks is aligned on them instead of `locate_face`.
        spec: what to store.
        locate_face: RGB image -> (68, 2) landmarks, or None where it finds no face.
        check_s: seconds of sampled frames between two looks for the face.
        source: what the video is, for messages (default: the chunk source's name).
        progress: show a progress bar of the source frames.

    Raises:
        UserError: no frame at all, or no face in any sampled frame.
    """
    walked = chunks if isinstance(chunks, ChunkSource) else None
    source = source or (walked.source if walked else "the video")
    tracker = _Tracker(check_every=max(1, round(1000.0 * check_s / spec.step_ms)))
    numbers: list[int] = []
    recent: deque[np.ndarray | None] = deque(maxlen=spec.span)
    empty = np.zeros((spec.grid, spec.grid, 2), np.float16)
    motion: list[np.ndarray] = []
    bar = tqdm(
        total=(walked.samples if walked else 0) or None, desc=f"motion of {Path(source).name}",
        unit="sample", disable=not progress,
    )
    with bar:
        for chunk in chunks:
            for k, (number, image) in enumerate(zip(chunk.numbers, chunk.images, strict=True)):
                sample = len(numbers)
                numbers.append(int(number))
                if tracker.wants_check(sample):
                    known = chunk.landmarks
                    found = known[k] if known is not None else locate_face(image)
                    tracker.checked(sample, found, spec.crop_size)
                crop = None
                if tracker.affine is not None:
                    crop = cv2.cvtColor(
                        warp_crop(image, tracker.affine, spec.crop_size), cv2.COLOR_RGB2GRAY
                    )
                tracker.segment.append(tracker.alignments if crop is not None else -1)
                if len(recent) == spec.span:
                    start = recent[0]
                    flow = empty
                    if start is not None and crop is not None:
                        flow = resize_flow(compute_flow(start, crop, spec.flow_method), spec.grid)
                    motion.append(flow.astype(np.float16))
                recent.append(crop)
            bar.update(len(chunk.numbers))
    if not numbers:
        raise UserError(f"{source}: no frame to read; give a video or a folder of frames")
    if not tracker.alignments:
        raise UserError(
            f"no face found in any of the {len(numbers)} sampled frames of {source}; the "
            "video must show one frontal face (dlib's detector finds faces from ~40 px wide)"
        )
    segment = np.array(tracker.segment)
    count = max(len(numbers) - spec.span, 0)
    valid = (segment[:count] >= 0) & (segment[:count] == segment[spec.span : spec.span + count])
    stacked = np.stack(motion) if motion else np.zeros((0, *empty.shape), np.float16)
    stacked[~valid] = 0
    return VideoMotion(
        frame_numbers=np.array(numbers, np.int32),
        motion=stacked,
        valid=valid,
        notes=_notes(tracker, numbers) + (walked.notes if walked else []),
    )


def without_head_motion(motion: np.ndarray) -> np.ndarray:
    """The flow of each grid cell less the median flow of its frame's grid, float32.

    The face was aligned once (per stretch of video), so a head that drifts or turns
    moves every cell alike; the median over the cells is that common motion (facial
    movements cover a minority of the cells), as the MEGC spotting baselines remove it.
    """
    flow = motion.astype(np.float32)
    return flow - np.median(flow, axis=(-3, -2), keepdims=True)


def normalised_motion(motion: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(P, G, G, 2) float32: the flow less the head's own motion (`without_head_motion`),
    each grid cell divided by its typical motion in this video (the median over the
    video's valid positions of that cell's magnitude); zero where not valid.

    A learned spotter reads this: how unusual each cell's motion is for this face and
    camera. Raw, the cells at the face's border (moved against the background by every
    turn of the head) vary ten times more than those of the brows or the mouth and drown
    a sub-pixel micro-expression; per video, so it needs no labels and a new video is
    normalised as the training videos were.

    Args:
        motion: (P, G, G, 2) a video's pooled flows.
        valid: (P,) bool, the positions measured on the face.
    """
    flow = without_head_motion(motion)
    valid = np.asarray(valid, bool)
    if not valid.any():
        return np.zeros_like(flow)
    typical = np.median(np.linalg.norm(flow[valid], axis=-1), axis=0)[..., None]
    # A floor against a cell that never moves (a blank border, a synthetic face):
    # a hundredth of a pixel, far below any facial movement.
    flow = flow / np.maximum(typical, 0.01)
    flow[~valid] = 0.0
    return flow


def motion_score(motion: np.ndarray) -> np.ndarray:
    """(P,) the training-free score of each position: the mean flow magnitude over the grid
    cells, after removing the head's own motion, with the eyes' row of cells left out
    (blinks move the eyelids far more than any micro-expression does).

    Args:
        motion: (P, G, G, 2) pooled flows on the aligned face (eye line at `EYE_LINE`).
    """
    grid = motion.shape[-3]
    magnitude = np.linalg.norm(without_head_motion(motion), axis=-1)
    rows = np.ones(grid, bool)
    rows[min(int(EYE_LINE * grid), grid - 1)] = False
    return magnitude[..., rows, :].mean(axis=(-2, -1))


def motion_peak(
    chunks: Iterable[FrameChunk],
    locate_face: LocateFace = dlib_face,
    *,
    face_cropped: bool = False,
    spec: MotionSpec = MotionSpec(crop_size=128),
    source: str = "the clip",
) -> int:
    """The frame of a clip whose motion from its first frame (the onset) is largest: the
    apex a clip without one gets.

    The face is aligned once, on the first frame where it is found (the onset, unless the
    face is missed there); each frame's flow from that one is pooled, less
    the share of the onset-to-offset flow its time would bring (a clip's offset is back
    to neutral, so that flow is the slow drift of the head and the light, taken as
    linear), and scored as a spotter scores a position (`motion_score`: the head's own
    motion removed, the eyes' blinks left out). On the synthetic clips removing the drift
    halves the distance to the annotated apex, and a 128 px crop beats 64 px.

    Args:
        chunks: the clip's frames, onset first, offset last (every frame: each is a
            candidate).
        locate_face: finds the onset's face (a chunk's landmarks, where given, are used).
        face_cropped: the frames are face crops already: resized, not aligned.
        spec: the crop, grid and flow method of the score.
        source: what the clip is, for messages.

    Raises:
        NoFaceError: no frame, or no face in any frame.
    """
    affine = onset = None
    numbers: list[int] = []
    flows: list[np.ndarray] = []
    for chunk in chunks:
        for k, (number, image) in enumerate(zip(chunk.numbers, chunk.images, strict=True)):
            if affine is None:
                if face_cropped:
                    affine = resize_affine(image.shape, spec.crop_size)
                else:
                    found = chunk.landmarks[k] if chunk.landmarks is not None else None
                    found = locate_face(image) if found is None else found
                    if found is None:
                        continue  # a face missed on the onset: the next frames are tried
                    affine = align_from_landmarks(found, spec.crop_size)
            crop = cv2.cvtColor(warp_crop(image, affine, spec.crop_size), cv2.COLOR_RGB2GRAY)
            onset = crop if onset is None else onset
            numbers.append(int(number))
            flows.append(resize_flow(compute_flow(onset, crop, spec.flow_method), spec.grid))
    if not numbers:
        raise NoFaceError(f"no face found in any frame of {source}")
    motion = np.stack(flows)
    share = np.linspace(0.0, 1.0, len(motion))[:, None, None, None]
    return numbers[int(np.argmax(motion_score(motion - share * motion[-1])))]


def _notes(tracker: _Tracker, numbers: list[int]) -> list[str]:
    """The tracker's events and a face still missing at the end, as lines, in time order."""
    notes = []
    for kind, first, second in tracker.events:
        if kind == "late":
            notes.append(f"no face before frame {numbers[first]}")
        elif kind == "moved":
            notes.append(f"face moved far at frame {numbers[first]}: aligned anew there")
        else:
            notes.append(
                f"face lost at frame {numbers[first]}, found again at frame {numbers[second]}"
            )
    if tracker.lost_at is not None:
        notes.append(
            f"face lost at frame {numbers[tracker.lost_at]}, not found again before the last "
            f"sampled frame {numbers[-1]}"
        )
    return notes
