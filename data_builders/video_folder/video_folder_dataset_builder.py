"""TFDS builder of `video_folder`: frame pairs of any folder of face videos you have.

Layout (manual_dir), one folder per person:

    <root>/<subject>/<clip>.mp4 (.avi, .mov, .mkv)     a video, read with OpenCV
    <root>/<subject>/<clip>/<frames>.jpg (.png, .bmp)   or a folder of frame images
    <root>/landmarks/<subject>/<clip>.csv               optional landmarks sidecar

Each clip is used whole. Videos: fps from the container (the config's `fps` where it
gives none), frame numbers t are 0-based frame indices. Frame folders: frames are the
files with an integer in their name before the extension, ordered by that integer
(gaps are reported), at the config's `fps`. The face is aligned from the clip's first
frame: its row of the sidecar (the repo's format: header frame,x_0..x_67,y_0..y_67,
rows by frame number) when there is one, else dlib. A clip where no face is found,
or a video OpenCV cannot read, is named; the build fails listing every such clip,
none is silently dropped. A clip shorter than k + 1 frames is skipped and reported.

Subjects are namespaced `<dataset_name>/<subject folder>` (config `dataset_name`,
default "videos"); the `dataset` feature is dataset_name too. Identities are only as
known as the folder names are: metadata says identities_known=True with
identities="folder names", and the pre-training leakage guard can only compare names.
"""

import dataclasses
import re
from pathlib import Path

from data_builders.macro_pairs import MacroPairsConfig, MacroReleaseBuilder
from data_builders.reading import list_frames
from data_builders.records import MacroClip, MacroRelease, ReleaseLog
from mer_jax.errors import UserError
from mer_jax.preprocess.video import VIDEO_EXTENSIONS, is_video, probe_video

LANDMARKS_DIR = "landmarks"
VIDEO_FOLDER_LAYOUT = (
    "expected layout: <root>/<subject>/<clip>.mp4 (or .avi, .mov, .mkv) or "
    "<root>/<subject>/<clip>/<frame number>.jpg (or .png, .bmp), one folder per subject; "
    "optional sidecars <root>/landmarks/<subject>/<clip>.csv"
)
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
video_folder reads face videos you have (recordings you made or a corpus you are
licensed to use), sorted into one folder per person; pass the root as manual_dir.
{VIDEO_FOLDER_LAYOUT}.
"""
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


@dataclasses.dataclass(eq=False)
class VideoFolderConfig(MacroPairsConfig):
    """The pair options, the subject namespace and the fallback frame rate.

    Attributes:
        dataset_name: the `dataset` feature and subject namespace (`<name>/<subject>`).
        fps: frame rate of frame folders, and of videos whose container gives none.
    """

    dataset_name: str = "videos"
    fps: float = 30.0

    def __post_init__(self) -> None:
        """Rejects a namespace that would not read back as one, or a non-positive fps."""
        if not _NAME.fullmatch(self.dataset_name):
            raise UserError(
                f"dataset_name {self.dataset_name!r} must be letters, digits, _ . + - only"
            )
        if not self.fps > 0:
            raise UserError(f"fps must be positive, got {self.fps}")
        super().__post_init__()


def read_video_folder(
    root: str | Path, *, dataset_name: str = "videos", fps: float = 30.0
) -> MacroRelease:
    """Every clip of a video folder, sorted by subject and clip.

    Each video's container is opened and its first frame decoded, so unreadable videos
    are found here, before a long build.

    Raises:
        UserError: root is not a folder, holds videos or frames outside subject folders,
            has no clip (the message shows the expected layout), or videos OpenCV
            cannot read (all named).
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"video folder {root} does not exist; {VIDEO_FOLDER_LAYOUT}")
    loose = sorted(path.name for path in root.iterdir() if path.is_file() and _is_clip_file(path))
    if loose:
        raise UserError(
            f"{root} holds videos or frames outside a subject folder ({', '.join(loose[:5])}); "
            f"{VIDEO_FOLDER_LAYOUT}"
        )
    log = ReleaseLog()
    clips: list[MacroClip] = []
    unreadable: list[str] = []
    subject_dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name != LANDMARKS_DIR)
    for subject_dir in subject_dirs:
        subject = f"{dataset_name}/{subject_dir.name}"
        seen: dict[str, Path] = {}
        found = len(clips) + len(unreadable)
        for path in sorted(subject_dir.iterdir()):
            video = is_video(path)
            if not (video or path.is_dir()):
                continue  # stray files: thumbnails, notes
            name = path.stem if video else path.name
            if name in seen:
                raise UserError(
                    f"two clips named {name!r} for subject {subject_dir.name}: {seen[name]} "
                    f"and {path}; rename one"
                )
            seen[name] = path
            sidecar = root / LANDMARKS_DIR / subject_dir.name / f"{name}.csv"
            common = {
                "dataset": dataset_name,
                "subject": subject,
                "clip": name,
                "landmarks_path": sidecar if sidecar.is_file() else None,
                "where": str(path),
                "landmarks_location": sidecar,
            }
            if video:
                try:
                    clip_fps, count = probe_video(path, fps)
                except UserError as error:
                    unreadable.append(str(error))
                    continue
                clips.append(
                    MacroClip(
                        fps=clip_fps, frame_numbers=tuple(range(count)), video_path=path, **common
                    )
                )
                continue
            frames = list_frames(path)
            if not frames:
                log.add("skipped", str(path), f"{subject_dir.name}/{name}", "no frame images")
                continue
            numbers = tuple(sorted(frames))
            gaps = numbers[-1] - numbers[0] + 1 - len(numbers)
            if gaps:
                log.add("gap", str(path), f"{subject_dir.name}/{name}", f"{gaps} frame(s) missing")
            clips.append(
                MacroClip(
                    fps=fps,
                    frame_numbers=numbers,
                    frame_paths=tuple(frames[number] for number in numbers),
                    **common,
                )
            )
        if len(clips) + len(unreadable) == found:
            if any(path.is_file() and _is_clip_file(path) for path in subject_dir.iterdir()):
                raise UserError(
                    f"{subject_dir} holds frame images but no clip: put each clip's frames "
                    f"in a folder of their own, <root>/<subject>/<clip>/; {VIDEO_FOLDER_LAYOUT}"
                )
            log.add("skipped", str(subject_dir), "", "no video or frame folder in it")
    if unreadable:
        raise UserError(
            f"{len(unreadable)} video(s) in {root} cannot be read; convert or remove them:\n  "
            + "\n  ".join(unreadable)
        )
    if not clips:
        raise UserError(
            f"{root} holds no video or frame folder in a subject folder; {VIDEO_FOLDER_LAYOUT}"
        )
    return MacroRelease(dataset_name, root, tuple(clips), tuple(log.notes))


def _is_clip_file(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in VIDEO_EXTENSIONS or suffix in (".jpg", ".jpeg", ".png", ".bmp")


class Builder(MacroReleaseBuilder):
    """video_folder: one "train" split of frame pairs of every clip in the folder."""

    BUILDER_CONFIGS = [VideoFolderConfig(name="default", description="videos and frame folders")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    IDENTITIES = "folder names: people are only as distinct as their folders"

    def read_release(self, manual_dir: Path) -> MacroRelease:
        """The clips in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        config = self.builder_config
        return read_video_folder(manual_dir, dataset_name=config.dataset_name, fps=config.fps)
