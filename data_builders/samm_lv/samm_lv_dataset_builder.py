"""TFDS builder of the SAMM long videos: whole grayscale recordings at 200 fps, for spotting.

The release: one frame folder per recording (`SAMM_longvideos/006_1/006_1_0001.jpg`,
frame numbers padded to 4 digits, 5 in recordings of 10,000 frames or more) and a
workbook beside it whose header (Subject, Filename, Inducement Code, Onset, Apex,
Offset, Duration, Type, Action Units, Notes) sits below preamble rows, one of them with
merged cells. A row's Filename names its interval ("006_1_2": recording 006_1); its
Type says micro or macro. Everything else is the shared long-video reading
(`data_builders.reading.join_videos`).
"""

import re
from collections.abc import Mapping
from pathlib import Path

from data_builders.long_video_builder import LongVideoBuilder, LongVideoConfig
from data_builders.reading import LongVideoReader, VideoFolder, child_dir
from data_builders.records import ReleaseLog
from data_builders.samm import samm_subject_folder
from data_builders.sheets import SheetRow
from mer_jax.errors import UserError

DATASET = "samm_lv"
FPS = 200.0
FRAME_FOLDER = "SAMM_longvideos"
SAMM_LV_LAYOUT = (
    "expected layout: <root>/SAMM_LongVideos_V*_Release.xlsx and frames in "
    f"<root>/{FRAME_FOLDER}/006_1/006_1_0001.jpg, one folder per recording"
)
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
SAMM long videos are licence-gated. Request them from Manchester Metropolitan University
(the SAMM page of Moi Hoon Yap's group, https://helward.mmu.ac.uk/STAFF/M.Yap/dataset.php,
licence agreement signed), unpack them into one folder and pass that folder as
manual_dir.
{SAMM_LV_LAYOUT}.
"""
_RECORDING = re.compile(r"(\d+)_\d+")


def samm_lv_videos(root: Path, layout: str) -> dict[str, VideoFolder]:
    """Recording name ("006_1") -> its folder, every folder like 006_1 of the release.

    Raises:
        UserError: no SAMM_longvideos/ folder, or none like 006_1 in it.
    """
    folder = child_dir(root, FRAME_FOLDER)
    if folder is None:
        raise UserError(f"{root} has no {FRAME_FOLDER}/ folder; {layout}")
    videos = {
        path.name: VideoFolder(f"{int(match.group(1)):03d}", path)
        for path in sorted(folder.iterdir())
        if path.is_dir() and (match := _RECORDING.fullmatch(path.name))
    }
    if not videos:
        raise UserError(f"{folder} holds no recording folder like 006_1; {layout}")
    return videos


def samm_lv_video(
    row: SheetRow, folders: Mapping[str, VideoFolder], log: ReleaseLog
) -> str | None:
    """The recording of a row: the folder whose name is its Filename or begins it
    ("006_1" for "006_1_2"), of the row's subject."""
    del log
    filename = row.filename.strip().lower()
    names = [
        name
        for name, folder in folders.items()
        if folder.subject == row.subject
        and (filename == name.lower() or filename.startswith(name.lower() + "_"))
    ]
    if not names:
        raise UserError(
            f"no recording folder {FRAME_FOLDER}/{row.subject}_N whose name begins its Filename"
        )
    return max(names, key=len)


# The recordings of a SAMM long-video release with their intervals (raises UserError for
# no workbook, several, or no frame folders).
read_samm_lv = LongVideoReader(
    dataset=DATASET,
    fps=FPS,
    sheet="SAMM_LongVideos*.xlsx",
    sheet_depth=1,
    layout=SAMM_LV_LAYOUT,
    subject_folder=samm_subject_folder,
    videos=samm_lv_videos,
    video_of=samm_lv_video,
)


class Builder(LongVideoBuilder):
    """samm_lv: one "train" split, one example per recording."""

    BUILDER_CONFIGS = [LongVideoConfig(name="default", description="SAMM long videos, dlib faces")]
    READER = read_samm_lv
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
