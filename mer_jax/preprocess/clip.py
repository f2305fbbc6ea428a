"""How one clip becomes features: aligned crops, flows, strain and landmarks.

The input is a `ClipFrames`: a clip's frame files by their original numbers, its onset,
apex and offset, and the optional landmarks sidecar. Dataset builders make one from each
annotated clip of a release; a folder of frames a user has can be described the same
way, without any coding sheet.

1. Face: dlib's detector finds the face box on the ONSET frame; where it finds none
   (a blink, motion blur) it tries the next `FACE_SEARCH_NEXT_FRAMES` frames and then
   the apex, and a clip without a face anywhere fails with a message that asks for a
   landmarks sidecar. Face-cropped releases skip detection: the whole frame is the box.
2. Alignment: one similarity transform per clip, estimated on the onset frame's
   landmarks (eyes level and at fixed crop positions, see `mer_jax.preprocess.face`)
   and applied to every frame used, so alignment adds no motion between frames. Onset
   landmarks come from the clip's landmarks sidecar when it has the onset frame, else
   from dlib on the onset frame. Face-cropped releases are not re-aligned: their frames
   are only resized to the crop.
3. Aligned uint8 crops (C x C x 3) of the onset, apex and offset frames.
4. Optical flow onset -> apex at crop resolution, then area-resized to S x S (values
   stay in crop pixels); optical strain computed on the full-resolution flow, then
   resized the same way.
5. Landmarks of the onset, the apex and the stored frames, in crop coordinates, ALL
   FROM ONE SOURCE, so their differences are the face's motion and never a change of
   pipeline (DeRe-GRL reads apex - onset as motion): the sidecar when it covers every
   one of those frames, else dlib's shape predictor on each full-resolution frame
   within the same face box, each mapped into the crop with the clip's transform.
6. With `num_frames` T > 0 (LTR3O's candidates): T frames sampled evenly in time from
   onset to offset (onset first, offset last; the present frame nearest each time
   point, so gaps and clips shorter than T repeat frames), their original numbers,
   crops and landmarks, and for every stored frame t the flows onset->t and t->offset
   with their strain, computed at crop resolution and resized to S x S like step 4.
   These flows use `frames_flow_method` (DIS by default: 2T flows a clip, where TV-L1
   would make the features the slowest part of a CPU run).

Landmarks sidecar: a CSV with header `frame,x_0,...,x_67,y_0,...,y_67` (the OpenFace
column names; extra columns are ignored), one row per ORIGINAL frame number (the
integer in the frame file name), coordinates in pixels of the frames read.
"""

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mer_jax.errors import UserError
from mer_jax.preprocess.face import (
    NUM_LANDMARKS,
    NoFaceError,
    align_from_landmarks,
    resize_affine,
    shared_landmarker,
    transform_landmarks,
    warp_crop,
)
from mer_jax.preprocess.flow import (
    FLOW_METHODS,
    compute_flow,
    compute_flows,
    optical_strain,
    resize_flow,
)

# The frame number is the last integer before the image extension: img46.jpg,
# reg_img46.jpg, 006_05562.jpg, image017581039.bmp. Anything else in a clip folder
# (Thumbs.db, .lnk shortcuts) is ignored.
_FRAME_FILE = re.compile(r"(\d+)\.(?:jpe?g|bmp|png)$", re.IGNORECASE)
# Frames after the onset that the face detector tries when it finds no face on the onset,
# before it tries the apex.
FACE_SEARCH_NEXT_FRAMES = 3


@dataclass(frozen=True)
class ClipOptions:
    """How clip features are computed.

    Attributes:
        crop_size: side C of the aligned face crops; flow is computed at this size.
        flow_size: side S of the stored flow and strain maps.
        flow_method: method of the onset -> apex flow: "tvl1", "dis", "farneback" or
            "tvl1_jax" (see `mer_jax.preprocess.flow`).
        num_frames: T, frames stored per clip with their flows onset->t and t->offset
            (0: none, for methods that only read onset -> apex).
        frames_flow_method: method of the onset->t and t->offset flows.
    """

    crop_size: int = 128
    flow_size: int = 28
    flow_method: str = "tvl1"
    num_frames: int = 16
    frames_flow_method: str = "dis"

    def __post_init__(self) -> None:
        """Rejects options that cannot make features."""
        for field in ("flow_method", "frames_flow_method"):
            if getattr(self, field) not in FLOW_METHODS:
                raise UserError(
                    f"unknown {field} {getattr(self, field)!r}; choose one of "
                    f"{', '.join(FLOW_METHODS)}"
                )
        # Onset, offset and at least one occurring frame between them.
        if self.num_frames != 0 and self.num_frames < 3:
            raise UserError(f"num_frames must be 0 or at least 3, got {self.num_frames}")
        # Flow maps are only ever downsized: upsizing them adds no information.
        if not 1 <= self.flow_size <= self.crop_size:
            raise UserError(
                f"need 1 <= flow_size <= crop_size; got crop_size {self.crop_size}, "
                f"flow_size {self.flow_size}"
            )


@dataclass(frozen=True)
class ClipFrames:
    """The frames of one clip and where its expression is: what `clip_features` reads.

    Attributes:
        name: the clip in messages, e.g. its sample id "casme2/sub01/EP02_01f/46".
        frame_numbers: the original numbers (the integers in the file names) of the
            frames present in onset..offset, ascending.
        frame_paths: the files of `frame_numbers`, in the same order.
        onset, apex, offset: original frame numbers, each one of `frame_numbers`.
        face_cropped: the frames are face crops already (alignment only resizes them).
        landmarks_path: the clip's landmarks sidecar CSV (see the module docstring), if
            it has one; its landmarks replace dlib's on the frames it covers.
    """

    name: str
    frame_numbers: tuple[int, ...]
    frame_paths: tuple[Path, ...]
    onset: int
    apex: int
    offset: int
    face_cropped: bool = False
    landmarks_path: Path | None = None

    def frame_path(self, frame_number: int) -> Path:
        """The file of an original frame number of this clip."""
        try:
            return self.frame_paths[self.frame_numbers.index(frame_number)]
        except ValueError:
            raise KeyError(
                f"clip {self.name} has no frame {frame_number} on disk "
                f"(frames {self.frame_numbers[0]}..{self.frame_numbers[-1]})"
            ) from None


def load_frame(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3); grayscale files are replicated to 3 channels."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {path} (missing, unreadable or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def list_frames(clip_dir: Path) -> dict[int, Path]:
    """Frame number -> file of every frame image in a clip folder.

    The one rule that numbers frames, for the dataset readers and for a new clip's
    folder at prediction time: a frame's number is the integer in its file name, any
    zero padding, whatever else the folder holds ignored.

    Raises:
        UserError: two files carry the same frame number (e.g. img46.jpg and img046.jpg).
    """
    frames: dict[int, Path] = {}
    for path in clip_dir.iterdir():
        match = _FRAME_FILE.search(path.name)
        if match is None or not path.is_file():
            continue
        number = int(match.group(1))
        if number in frames:
            raise UserError(
                f"{clip_dir} holds two files for frame {number}: {frames[number].name} and "
                f"{path.name}; keep one"
            )
        frames[number] = path
    return frames


# A clip's own landmarks, beside it: `<frame folder or video name>.landmarks.csv`, the
# per-frame 68 points the synthetic database ships for each clip, in the same format.
SIDECAR_SUFFIX = ".landmarks.csv"


def sidecar_path(clip_path: Path) -> Path:
    """Where the landmarks sidecar of a frame folder or video is read from."""
    stem = clip_path.name if clip_path.is_dir() else clip_path.stem
    return clip_path.parent / f"{stem}{SIDECAR_SUFFIX}"


def write_landmarks_csv(path: Path, numbers: Sequence[int], landmarks: np.ndarray) -> None:
    """Writes (frames, 68, 2) `landmarks` of frames `numbers` as `read_landmarks_sidecar`
    reads them: a header frame,x_0..x_67,y_0..y_67, then a row a frame."""
    header = ["frame"] + [f"x_{i}" for i in range(NUM_LANDMARKS)]
    header += [f"y_{i}" for i in range(NUM_LANDMARKS)]
    table = np.column_stack([np.asarray(numbers), landmarks[:, :, 0], landmarks[:, :, 1]])
    np.savetxt(
        path,
        table,
        fmt=["%d"] + ["%.3f"] * (2 * NUM_LANDMARKS),
        delimiter=",",
        header=",".join(header),
        comments="",
    )


def read_landmarks_sidecar(path: Path) -> dict[int, np.ndarray]:
    """Original frame number -> float32 (68, 2) landmarks of a sidecar CSV.

    Raises:
        UserError: a missing column or an unreadable row; the message names the file
            and the row.
    """
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        try:
            header = [name.strip() for name in next(rows)]
        except StopIteration:
            raise UserError(f"landmarks sidecar {path} is empty") from None
        names = ["frame"] + [f"x_{i}" for i in range(NUM_LANDMARKS)]
        names += [f"y_{i}" for i in range(NUM_LANDMARKS)]
        missing = [name for name in names if name not in header]
        if missing:
            raise UserError(
                f"landmarks sidecar {path} lacks column(s) {missing[:4]}...; expected a header "
                "frame,x_0..x_67,y_0..y_67"
            )
        indices = [header.index(name) for name in names]
        landmarks = {}
        for row_number, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                values = [float(row[index]) for index in indices]
            except (ValueError, IndexError):
                raise UserError(
                    f"landmarks sidecar {path} row {row_number} is not numeric"
                ) from None
            points = np.array(values[1:], dtype=np.float32).reshape(2, NUM_LANDMARKS).T
            landmarks[int(values[0])] = points
    return landmarks


class AlignedClip:
    """Aligned crops and crop-coordinate landmarks of the frames of one clip, all with
    the onset frame's alignment (computed once, cached per frame).

    Every landmark set comes from one source for the whole clip (module docstring, step
    5): the sidecar if it covers all of `landmark_frames`, else dlib's predictor on each
    full-resolution frame within one face box.
    """

    def __init__(self, clip: ClipFrames, crop_size: int, landmark_frames: Iterable[int]) -> None:
        """Reads the onset frame, finds the face and fixes the alignment.

        Args:
            clip: the clip.
            crop_size: side C of the crops.
            landmark_frames: the frames whose landmarks will be asked for.

        Raises:
            UserError, ValueError, OSError: an unreadable frame or sidecar, or no face
                in the frames tried (`NoFaceError`).
        """
        self._clip = clip
        self._crop_size = crop_size
        self._landmark_frames = frozenset(landmark_frames)
        sidecar = read_landmarks_sidecar(clip.landmarks_path) if clip.landmarks_path else {}
        self._predicted = not self._landmark_frames <= sidecar.keys()
        # Why dlib must find the face, for the message where it does not.
        self._sidecar_gap = (
            f"its landmarks sidecar {clip.landmarks_path} lacks frames "
            f"{sorted(self._landmark_frames - sidecar.keys())}, so every frame is predicted; "
            "complete the sidecar"
            if clip.landmarks_path
            else "or provide a landmarks sidecar CSV for this clip"
        )
        # Frame number -> landmarks in that frame's pixels (predicted ones: as loaded).
        self._frame_landmarks = (
            {} if self._predicted else {n: sidecar[n] for n in self._landmark_frames}
        )
        self._crops: dict[int, np.ndarray] = {}
        onset_frame = load_frame(clip.frame_path(clip.onset))
        height, width = onset_frame.shape[:2]
        self._face_box = (0, 0, width - 1, height - 1)
        if clip.face_cropped:
            # A face-cropped frame is all face: the whole frame is the box, as dlib's
            # detector misses faces that touch the image border.
            self.affine = resize_affine(onset_frame.shape, crop_size)
        else:
            if self._predicted or clip.onset not in sidecar:
                self._face_box = self._find_face(onset_frame)
            onset_landmarks = sidecar.get(clip.onset)
            if onset_landmarks is None:
                onset_landmarks = shared_landmarker().predict(onset_frame, self._face_box)
            self.affine = align_from_landmarks(onset_landmarks, crop_size)
        self._add(clip.onset, onset_frame)

    def _find_face(self, onset_frame: np.ndarray) -> tuple[int, int, int, int]:
        """The face box of the onset, else of the next frames, else of the apex."""
        clip = self._clip
        later = [n for n in clip.frame_numbers if n > clip.onset][:FACE_SEARCH_NEXT_FRAMES]
        tried = list(dict.fromkeys([clip.onset, *later, clip.apex]))
        for number in tried:
            frame = onset_frame if number == clip.onset else load_frame(clip.frame_path(number))
            box = shared_landmarker().detect(frame)
            if box is not None:
                return box
        raise NoFaceError(
            f"no face found in frames {tried} of {clip.frame_path(clip.onset).parent} (the "
            "onset, the next frames and the apex; "
            f"{onset_frame.shape[1]}x{onset_frame.shape[0]} pixels). Check that they show a "
            f"frontal face, {self._sidecar_gap}."
        )

    def _add(self, frame_number: int, frame: np.ndarray) -> None:
        """Keeps the crop of a loaded frame, and its landmarks where they are predicted."""
        self._crops[frame_number] = warp_crop(frame, self.affine, self._crop_size)
        if self._predicted and frame_number in self._landmark_frames:
            self._frame_landmarks[frame_number] = shared_landmarker().predict(
                frame, self._face_box
            )

    def crop(self, frame_number: int) -> np.ndarray:
        """The aligned uint8 (C, C, 3) crop of a frame."""
        if frame_number not in self._crops:
            self._add(frame_number, load_frame(self._clip.frame_path(frame_number)))
        return self._crops[frame_number]

    def landmarks(self, frame_number: int) -> np.ndarray:
        """float32 (68, 2) landmarks of one of the `landmark_frames`, in crop coordinates."""
        if frame_number not in self._landmark_frames:
            raise KeyError(f"landmarks of frame {frame_number} were not asked for")
        self.crop(frame_number)
        return transform_landmarks(self._frame_landmarks[frame_number], self.affine)


def flow_and_strain(
    start: np.ndarray, end: np.ndarray, flow_size: int, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """float16 (S, S, 2) flow and (S, S, 1) strain from crop `start` to crop `end`.

    Both are computed at crop resolution and then area-resized to S x S (flow values
    stay in crop pixels).
    """
    flow = compute_flow(
        cv2.cvtColor(start, cv2.COLOR_RGB2GRAY),
        cv2.cvtColor(end, cv2.COLOR_RGB2GRAY),
        method,
    )
    return stored_flow_and_strain(flow, flow_size)


def stored_flow_and_strain(flow: np.ndarray, flow_size: int) -> tuple[np.ndarray, np.ndarray]:
    """float16 (S, S, 2) flow and (S, S, 1) strain of a crop-resolution flow."""
    strain = optical_strain(flow)[..., None]
    return (
        resize_flow(flow, flow_size).astype(np.float16),
        resize_flow(strain, flow_size).astype(np.float16),
    )


def onset_apex_flows(
    onset_images: np.ndarray, apex_images: np.ndarray, options: ClipOptions
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The "flow" and "strain" features of a batch of clips, solved together.

    What `clip_features(..., with_flow=False)` leaves out: a build with a method of
    `BATCHED_FLOW_METHODS` solves the onset -> apex flows of many clips in one program
    on the accelerator.

    Args:
        onset_images, apex_images: uint8 (B, C, C, 3), the clips' aligned crops.
        options: the flow method and size.

    Returns:
        (flow, strain) of each clip, as `flow_and_strain` makes them.
    """
    gray = [
        np.stack([cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in images])
        for images in (onset_images, apex_images)
    ]
    flows = compute_flows(*gray, options.flow_method)
    return [stored_flow_and_strain(flow, options.flow_size) for flow in flows]


def middle_frame(frame_numbers: Iterable[int], onset: int, offset: int) -> int:
    """The apex of a clip without an annotated one: the present frame nearest the middle
    of onset..offset (the earlier of two equally near), the usual label-free convention
    (SMIC has no apex annotation at all)."""
    middle = (onset + offset) / 2
    return min(frame_numbers, key=lambda number: (abs(number - middle), number))


def sample_frames(frame_numbers: Sequence[int], num_frames: int) -> np.ndarray:
    """T frame numbers evenly spaced in time from the first to the last present frame.

    Each time point takes the present frame nearest to it, so a gap in the recording
    shifts a sample to its neighbour and a clip with fewer than T frames repeats
    frames; the first is always the onset and the last the offset.

    Args:
        frame_numbers: the clip's present frame numbers, ascending (onset..offset).
        num_frames: T.

    Returns:
        int32 (T,) original frame numbers, non-decreasing.
    """
    present = np.asarray(frame_numbers, np.int64)
    targets = np.linspace(present[0], present[-1], num_frames)
    nearest = np.abs(present[None, :] - targets[:, None]).argmin(axis=1)
    return present[nearest].astype(np.int32)


def stored_frames(
    clip: ClipFrames, numbers: np.ndarray, aligned: AlignedClip, options: ClipOptions
) -> dict[str, np.ndarray]:
    """The stored frames `numbers` of a clip with their landmarks and onset->t, t->offset
    flows."""
    flows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def flow(start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        # Repeated frames (short clips) compute each pair once.
        if (start, end) not in flows:
            flows[start, end] = flow_and_strain(
                aligned.crop(start),
                aligned.crop(end),
                options.flow_size,
                options.frames_flow_method,
            )
        return flows[start, end]

    to_t = [flow(clip.onset, int(n)) for n in numbers]
    from_t = [flow(int(n), clip.offset) for n in numbers]
    return {
        "frame_indices": numbers,
        "frames": np.stack([aligned.crop(int(n)) for n in numbers]),
        "landmarks_frames": np.stack([aligned.landmarks(int(n)) for n in numbers]),
        "flow_onset_to_t": np.stack([f for f, _ in to_t]),
        "flow_t_to_offset": np.stack([f for f, _ in from_t]),
        "strain_onset_to_t": np.stack([s for _, s in to_t]),
        "strain_t_to_offset": np.stack([s for _, s in from_t]),
    }


def clip_features(
    clip: ClipFrames, options: ClipOptions, with_flow: bool = True
) -> dict[str, np.ndarray]:
    """The pixel-derived features of one clip (see the module docstring).

    With `with_flow` False the onset -> apex "flow" and "strain" are left out, for the
    caller to solve in batches (`onset_apex_flows`).

    Returns:
        onset_image, apex_image, offset_image (uint8 (C, C, 3)); flow (float16
        (S, S, 2)) and strain (float16 (S, S, 1)) onset -> apex; landmarks_onset and
        landmarks_apex (float32 (68, 2), crop pixels); with T > 0 also frame_indices,
        frames, landmarks_frames, flow_onset_to_t, flow_t_to_offset, strain_onset_to_t
        and strain_t_to_offset, each with a leading T axis.

    Raises:
        UserError: the clip cannot be processed (unreadable frame, no face found); the
            message names the clip.
    """
    numbers = sample_frames(clip.frame_numbers, options.num_frames) if options.num_frames else []
    try:
        landmark_frames = {clip.onset, clip.apex, *map(int, numbers)}
        aligned = AlignedClip(clip, options.crop_size, landmark_frames)
        onset_apex = {}
        if with_flow:
            flow, strain = flow_and_strain(
                aligned.crop(clip.onset),
                aligned.crop(clip.apex),
                options.flow_size,
                options.flow_method,
            )
            onset_apex = {"flow": flow, "strain": strain}
        images = {
            "onset_image": aligned.crop(clip.onset),
            "apex_image": aligned.crop(clip.apex),
            "offset_image": aligned.crop(clip.offset),
        }
        landmarks_onset = aligned.landmarks(clip.onset)
        landmarks_apex = aligned.landmarks(clip.apex)
        frames = stored_frames(clip, numbers, aligned, options) if options.num_frames else {}
    except (UserError, ValueError, OSError) as error:
        raise UserError(f"clip {clip.name}: {error}") from error
    return {
        **images,
        **onset_apex,
        "landmarks_onset": landmarks_onset,
        "landmarks_apex": landmarks_apex,
        **frames,
    }
