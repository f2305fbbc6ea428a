"""The one video reader: a clip's frames from a video file or a folder of frame images.

Every video user goes through it: the macro-expression pair builders (a corpus of
videos), prediction on a new clip, and anything that walks a long recording. Frames are
decoded in order, one at a time, and only the frames asked for are converted and kept
(the others are grabbed, not retrieved), so a long video never sits whole in memory;
`frame_chunks` walks a whole recording in bounded chunks. A video's frames are numbered
from 0 in decoding order; a folder's by the integer in each file name
(`mer_jax.preprocess.clip.list_frames`).

A file OpenCV cannot open, or whose first frame it cannot decode (empty, truncated before
its first frame, not a video, a codec its FFmpeg lacks), is a one-line UserError saying
how to convert it. A container that overstates its frame count is not an error: the
frames decoded are what there is (`read_frames` returns that count).
"""

import math
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Literal, NamedTuple

import cv2
import numpy as np

from mer_jax.errors import UserError
from mer_jax.preprocess.clip import list_frames, load_frame

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
# Frame rates outside (0, this] in a container's header are taken as absent.
_MAX_FPS = 10_000.0
_CONVERT = (
    "convert it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`, or extract its frames into a folder"
)

Color = Literal["rgb", "bgr"]


def is_video(path: Path) -> bool:
    """Whether `path` is a video file by its extension (any case)."""
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _open(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise UserError(
            f"cannot open video {path} (missing, empty, truncated, not a video or a codec "
            f"OpenCV's FFmpeg lacks); {_CONVERT}"
        )
    return capture


def _no_frame(path: Path) -> UserError:
    return UserError(
        f"cannot decode any frame of video {path} (empty, truncated or damaged); {_CONVERT}"
    )


def probe_video[Fallback: (float, None)](
    path: Path, fallback_fps: Fallback
) -> tuple[float | Fallback, int]:
    """(frame rate, frame count) of a video, from its container; the first frame is
    decoded, so a file that cannot be read fails here, before a long job.

    The rate falls back to `fallback_fps` where the container gives none (or a nonsense
    one: at most 0, above 10,000 or not finite); None lets the caller say what to do.
    The count is 0 where the container gives none.

    Raises:
        UserError: the file cannot be opened or its first frame decoded; names it.
    """
    capture = _open(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        if not capture.read()[0]:
            raise _no_frame(path)
    finally:
        capture.release()
    fps = float(fps) if math.isfinite(fps) and 0.0 < fps <= _MAX_FPS else fallback_fps
    count = int(count) if math.isfinite(count) and count > 0 else 0
    return fps, count


def decode_frames(
    path: Path, keep: Collection[int] | None, until: int | None, color: Color
) -> Iterator[tuple[int, np.ndarray | None]]:
    """(index, frame) of every frame decoded, in order, up to index `until`; the frame is
    None where its index is not in `keep` (None: every frame is kept). Decoding stops at
    the first frame that cannot be grabbed or retrieved (the end, or a damaged part).

    Raises:
        UserError: the video cannot be opened or has no decodable frame.
    """
    capture = _open(path)
    index = 0
    try:
        while (until is None or index <= until) and capture.grab():
            frame = None
            if keep is None or index in keep:
                ok, frame = capture.retrieve()
                if not ok:
                    break  # a damaged frame ends the readable part, as a failed grab does
                if color == "rgb":
                    frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            yield index, frame
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise _no_frame(path)


def read_frames[Kept](
    path: Path,
    keep: Collection[int],
    *,
    until: int | None = None,
    color: Color = "rgb",
    transform: Callable[[int, np.ndarray], Kept] | None = None,
) -> tuple[dict[int, Kept], int]:
    """The frames of a video whose index is in `keep`, and how many frames were decoded.

    Args:
        path: the video.
        keep: the 0-based indices wanted (an empty set: count the frames only).
        until: decode no further than this index (None: to the end, so the count is the
            video's real frame count).
        color: "rgb" or "bgr" (OpenCV's order, e.g. to write the frames with cv2).
        transform: applied to each kept frame as it is decoded, (index, frame) -> what is
            kept (e.g. a face crop), so only that stays in memory.

    Returns:
        (index -> frame, or its transform, of every kept index that exists; the number
        of frames decoded).

    Raises:
        UserError: the video cannot be opened or has no decodable frame.
    """
    kept: dict[int, Kept] = {}
    count = 0
    for index, frame in decode_frames(path, keep, until, color):
        count = index + 1
        if frame is not None:
            kept[index] = frame if transform is None else transform(index, frame)
    return kept, count


def count_frames(path: Path) -> int:
    """The frames of a video, counted by decoding it (containers may not say, or lie).

    Raises:
        UserError: the video cannot be opened or has no decodable frame.
    """
    return read_frames(path, ())[1]


class FrameChunk(NamedTuple):
    """Frames of a recording, in order: their numbers as the source numbers them, the
    (n, H, W, 3) uint8 frames, and, where the source knows them (a generator, a landmarks
    sidecar), the (n, 68, 2) face landmarks of each frame (None: the reader finds them)."""

    numbers: np.ndarray
    images: np.ndarray
    landmarks: np.ndarray | None = None


def frame_chunks(
    source: Path, chunk_frames: int, *, step: int = 1, color: Color = "rgb"
) -> Iterator[FrameChunk]:
    """A video's or a frame folder's frames, in order, every `step`-th one (the others are
    decoded but never converted or kept), at most `chunk_frames` at a time: a whole
    recording is walked without ever holding more than one chunk.

    Raises:
        UserError: neither a video nor a folder of frame images, a video that cannot be
            read, or frames of different sizes within a chunk.
        ValueError: chunk_frames or step below 1.
    """
    for name, value in (("chunk_frames", chunk_frames), ("step", step)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")
    frames: Iterator[tuple[int, np.ndarray | None]]
    if is_video(source):
        # A range answers `in` by arithmetic: the sampled frames of a video of any length.
        frames = decode_frames(source, range(0, sys.maxsize, step), None, color)
    elif source.is_dir() and (files := list_frames(source)):
        numbers = sorted(files)[::step]
        frames = ((number, folder_frame(files[number], color)) for number in numbers)
    else:
        raise UserError(
            f"{source} is neither a video ({', '.join(VIDEO_EXTENSIONS)}) nor a folder of "
            "frame images (.jpg, .png, .bmp)"
        )
    return chunked(str(source), frames, chunk_frames)


def chunked(
    source: str, frames: Iterable[tuple[int, np.ndarray | None]], chunk_frames: int
) -> Iterator[FrameChunk]:
    """(number, frame) pairs in chunks of at most `chunk_frames`; pairs without a frame
    (decoded, not kept) are skipped. `source` names the recording in errors.

    Raises:
        UserError: frames of different sizes within a chunk.
        ValueError: chunk_frames below 1.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}.")
    numbers: list[int] = []
    chunk: list[np.ndarray] = []
    for number, frame in frames:
        if frame is None:
            continue
        numbers.append(number)
        chunk.append(frame)
        if len(chunk) == chunk_frames:
            yield _chunk(source, numbers, chunk)
            numbers, chunk = [], []
    if chunk:
        yield _chunk(source, numbers, chunk)


def folder_frame(path: Path, color: Color = "rgb") -> np.ndarray:
    """One frame image, as a UserError naming it where it cannot be read."""
    try:
        rgb = load_frame(path)
    except ValueError as error:
        raise UserError(str(error)) from None
    return rgb if color == "rgb" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _chunk(source: str, numbers: list[int], frames: list[np.ndarray]) -> FrameChunk:
    shapes = {frame.shape for frame in frames}
    if len(shapes) > 1:
        raise UserError(
            f"{source}: frames {numbers[0]}..{numbers[-1]} differ in size ({sorted(shapes)}); "
            "a clip's frames must share one size"
        )
    return FrameChunk(np.asarray(numbers, np.int64), np.stack(frames))
