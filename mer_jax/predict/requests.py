"""The clips a prediction is asked for, and their preprocessing exactly as the build's.

What `--input PATH` names (`read_requests`): a folder of frames, numbered by the integer
in their file names (`mer_jax.preprocess.list_frames`); a video read with OpenCV, its
frame numbers the 0-based frame indices; or a CSV of clips (header
`path,onset,offset[,apex]`, paths relative to the CSV's folder, empty cells as omitted
flags). `--onset`/`--offset` omitted: the whole folder or video is the clip (with a
warning). No apex: the motion peak, the frame whose head-motion-free flow from the onset
is largest (`mer_jax.preprocess.long_video.motion_peak`), not the middle frame: a clip
cut around an expression seldom has its apex in the middle.
"""

import csv
import dataclasses
import logging
import pathlib
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import cv2
import numpy as np

from mer_jax.errors import UserError
from mer_jax.preprocess import (
    ClipFrames,
    ClipOptions,
    NoFaceError,
    clip_features,
    list_frames,
    read_landmarks_sidecar,
    sample_frames,
    sidecar_path,
)
from mer_jax.preprocess.long_video import CHUNK, dlib_face, folder_chunks, motion_peak
from mer_jax.preprocess.video import (
    VIDEO_EXTENSIONS,
    FrameChunk,
    chunked,
    decode_frames,
    is_video,
    read_frames,
)
from mer_jax.workdir import TrainedBuild

log = logging.getLogger(__name__)

def clip_options(build: TrainedBuild) -> ClipOptions:
    """The build's preprocessing options, as its dataset.json records them."""
    fields = [field.name for field in dataclasses.fields(ClipOptions)]
    return ClipOptions(**{name: build.metadata[name] for name in fields})


def preprocessing_settings(build: TrainedBuild) -> dict[str, Any]:
    """The preprocessing settings a caller needs to make a model input."""
    return {**dataclasses.asdict(clip_options(build)), "face_cropped": build.face_cropped}


@dataclasses.dataclass(frozen=True)
class ClipRequest:
    """One clip to predict on.

    Attributes:
        path: a frame folder or a video file.
        onset, offset, apex: frame numbers, None where not given.
        where: where the request comes from, for messages ("--input", "clips.csv row 3").
    """

    path: pathlib.Path
    onset: int | None = None
    offset: int | None = None
    apex: int | None = None
    where: str = "--input"


def read_requests(
    input_path: str | pathlib.Path,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
) -> list[ClipRequest]:
    """The clips an --input names: itself (a folder or video), or the rows of a CSV.

    Raises:
        UserError: no such path, a CSV given with onset/offset/apex flags, a CSV without
            a path column or with a cell that is not a frame number (file and row named).
    """
    path = pathlib.Path(input_path).expanduser()
    if not path.exists():
        raise UserError(f"--input {path} does not exist")
    if path.suffix.lower() != ".csv":
        return [ClipRequest(path, onset, offset, apex)]
    if (onset, offset, apex) != (None, None, None):
        raise UserError(
            f"--input {path} is a CSV of clips: give each clip's frames in its onset, offset "
            "and apex columns, not as --onset/--offset/--apex"
        )
    requests = []
    with path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        columns = [name.strip() for name in rows.fieldnames or []]
        if "path" not in columns:
            raise UserError(
                f"{path} has no 'path' column; expected a header path,onset,offset[,apex]"
            )
        for row_number, row in enumerate(rows, start=2):
            cells = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not cells.get("path"):
                continue
            where = f"{path.name} row {row_number}"
            frames = {
                name: _frame_cell(cells.get(name, ""), name, where)
                for name in ("onset", "offset", "apex")
            }
            requests.append(ClipRequest(path.parent / cells["path"], **frames, where=where))
    if not requests:
        raise UserError(f"{path} lists no clip; expected a header path,onset,offset[,apex]")
    return requests


def _frame_cell(text: str, column: str, where: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{where}: {column} {text!r} is not a frame number") from None


@dataclasses.dataclass(frozen=True)
class ClipSpan:
    """A request's frames resolved against what is on disk: onset, apex, offset."""

    onset: int
    apex: int
    offset: int


def resolve_span(
    request: ClipRequest,
    present: Sequence[int],
    source: str,
    motion_apex: Callable[[int, int], int],
) -> ClipSpan:
    """The request's onset, apex and offset among the `present` frame numbers (sorted).

    Without onset and offset the clip is every present frame (warned about); without an
    apex, `motion_apex(onset, offset)`: the clip's motion peak.

    Raises:
        UserError: only one of onset/offset, a frame not present, onset after offset, or
            an apex outside onset..offset.
    """
    where = f"{request.where} ({request.path})"
    if (request.onset is None) != (request.offset is None):
        raise UserError(f"{where}: give both onset and offset, or neither (the whole clip)")
    first, last = present[0], present[-1]
    if request.onset is None:
        log.warning(
            "%s: no onset/offset given, so the whole %s (frames %d..%d) is taken as the clip",
            where,
            source,
            first,
            last,
        )
        onset, offset = first, last
    else:
        onset, offset = request.onset, request.offset
    named = {"onset": onset, "offset": offset}
    if request.apex is not None:
        named["apex"] = request.apex
    present_set = set(present)
    for name, number in named.items():
        if number not in present_set:
            raise UserError(
                f"{where}: {name} {number} is out of range: the {source} has frames "
                f"{first}..{last}"
                + ("" if last - first + 1 == len(present) else f" ({len(present)} present)")
            )
    if offset < onset:
        raise UserError(f"{where}: onset {onset} is after offset {offset}")
    if request.apex is not None and not onset <= request.apex <= offset:
        raise UserError(f"{where}: apex {request.apex} is outside onset..offset {onset}..{offset}")
    apex = request.apex if request.apex is not None else motion_apex(onset, offset)
    return ClipSpan(onset, apex, offset)


def clip_frames(request: ClipRequest, build: TrainedBuild, scratch: pathlib.Path) -> ClipFrames:
    """The clip of a request as `clip_features` reads it (a video's frames decoded into
    `scratch`).

    Raises:
        UserError: not a folder or video, no frame image in a folder, an unreadable
            video, a video for a face-cropped build, or a span out of range.
    """
    path = request.path
    sidecar = sidecar_path(path)
    landmarks = sidecar if sidecar.is_file() else None
    known = read_landmarks_sidecar(sidecar) if landmarks else {}
    name = str(path)

    def peak(chunks: Iterable[FrameChunk], onset: int, offset: int) -> int:
        def face(image: np.ndarray) -> np.ndarray | None:
            return known[onset] if onset in known else dlib_face(image)

        try:
            return motion_peak(chunks, face, face_cropped=build.face_cropped, source=str(path))
        except NoFaceError as error:
            # The clip's features cannot be made either: their error says how to fix it.
            log.warning("%s; the middle frame is taken as the apex", error)
            return (onset + offset) // 2

    if path.is_dir():
        frames = list_frames(path)
        if not frames:
            raise UserError(
                f"{request.where}: folder {path} holds no frame image (.jpg, .png, .bmp)"
            )

        def folder_apex(onset: int, offset: int) -> int:
            inside = [(n, frames[n]) for n in sorted(frames) if onset <= n <= offset]
            return peak(folder_chunks(inside, 1), onset, offset)

        span = resolve_span(request, sorted(frames), "folder", folder_apex)
        if build.face_cropped:
            log.warning(
                "%s: the models were trained on the official face crops of %s, so the frames "
                "of %s are taken as face crops and only resized, as those were",
                request.where,
                build.name,
                path,
            )
        numbers = [n for n in sorted(frames) if span.onset <= n <= span.offset]
        paths = [frames[n] for n in numbers]
    elif is_video(path):
        if build.face_cropped:
            raise UserError(
                f"{request.where}: {path} is a video, but these models were trained on the "
                f"official face crops of {build.name} (release {build.release!r}), which "
                "were only resized, never aligned by us, so a video cannot be cropped "
                "like them. Give a folder of face-cropped frames, or use a workdir trained on "
                "the raw release."
            )
        # Frames are counted up to the last frame requested only: a long recording is not
        # decoded to its end to check a clip at its start (one past its end is the count).
        until = None  # the whole video is the clip
        if request.offset is not None:
            until = max(n for n in (request.onset, request.offset, request.apex) if n is not None)
        _, count = read_frames(path, (), until=until, color="bgr")

        def video_apex(onset: int, offset: int) -> int:
            inside = decode_frames(path, range(onset, offset + 1), offset, "rgb")
            return peak(chunked(str(path), inside, CHUNK), onset, offset)

        span = resolve_span(request, range(count), "video", video_apex)
        inside = range(span.onset, span.offset + 1)
        # Only the frames clip_features reads are decoded: onset, apex, offset and the T
        # stored ones. Each stored frame is the present frame nearest its time point, and
        # that frame is among these, so sampling them picks the same frames as sampling all.
        wanted = {span.onset, span.apex, span.offset}
        if clip_options(build).num_frames:
            wanted |= {int(n) for n in sample_frames(inside, clip_options(build).num_frames)}
        decoded, _ = read_frames(path, wanted, until=max(wanted), color="bgr")
        numbers = sorted(wanted)
        paths = []
        for number in numbers:
            # BMP: lossless, so the decoded pixels reach clip_features unchanged.
            frame_path = scratch / f"frame_{number}.bmp"
            cv2.imwrite(str(frame_path), decoded[number])
            paths.append(frame_path)
        name = f"{path} frames {span.onset}..{span.offset}"
    else:
        raise UserError(
            f"{request.where}: {path} is neither a frame folder, a video "
            f"({', '.join(VIDEO_EXTENSIONS)}) nor a CSV of clips"
        )
    return ClipFrames(
        name=name,
        frame_numbers=tuple(numbers),
        frame_paths=tuple(paths),
        onset=span.onset,
        apex=span.apex,
        offset=span.offset,
        face_cropped=build.face_cropped,
        landmarks_path=landmarks,
    )


def preprocess(request: ClipRequest, build: TrainedBuild) -> tuple[ClipFrames, dict[str, Any]]:
    """A requested clip and its features, computed exactly as the build computed its
    clips' (`clip_features` with the build's options).

    Raises:
        UserError: as `clip_frames`, or the clip cannot be processed; when no face is
            found, the message names the sidecar path that would fix it.
    """
    with tempfile.TemporaryDirectory(prefix="mer_jax_clip_") as scratch:
        clip = clip_frames(request, build, pathlib.Path(scratch))
        try:
            features = clip_features(clip, clip_options(build))
        except UserError as error:
            message = str(error)
            # A video's frames were decoded into the scratch folder: name them as frames
            # of the video, which is what the user gave.
            for number, path in zip(clip.frame_numbers, clip.frame_paths, strict=True):
                if path.parent == pathlib.Path(scratch):
                    message = message.replace(str(path), f"{request.path} frame {number}")
            if isinstance(error.__cause__, NoFaceError):
                message += (
                    f" The sidecar of this clip would be read from {sidecar_path(request.path)}"
                    " (header frame,x_0..x_67,y_0..y_67, one row per frame number)."
                )
            raise UserError(f"{request.where}: {message}") from None
    return clip, features
