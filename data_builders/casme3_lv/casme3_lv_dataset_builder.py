"""TFDS builder of CAS(ME)^3 Part A as long videos: whole task recordings at 30 fps, for
spotting, with their macro- and micro-expression intervals.

The release: one frame folder per subject and task (`part_A/data/part_A/spNO.1/a/color/0.jpg`,
frame numbers unpadded; real recordings lost their first frames and have gaps) and the
workbook `part_A/annotation/CAS(ME)3_part_A_v2.xls[x]`, whose sheet 'AU+Emotion' holds
Subject, Filename (the task letter), Onset, Apex, Offset, AU, Expression type and
Objective class, macro and micro rows alike. Its sheet of eye blinks has no type column,
so it is never read. A task letter whose case differs from its folder's ("A" for a/) is
matched and noted.
"""

from collections.abc import Mapping
from pathlib import Path

from data_builders.casme3 import casme3_dataset_builder as casme3
from data_builders.long_video_builder import LongVideoBuilder, LongVideoConfig
from data_builders.reading import LongVideoReader, VideoFolder, child_dir
from data_builders.records import ReleaseLog
from data_builders.sheets import SheetRow
from mer_jax.errors import UserError

DATASET = "casme3_lv"
CASME3_LV_LAYOUT = (
    "expected layout: <root>/part_A/annotation/CAS(ME)3_part_A_v2.xlsx (or .xls; at most 3 "
    f"folders down) and {casme3.PART_A_FRAMES}"
)
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
{casme3.CASME3_LICENCE}, unpack Part A and its annotation into one
folder and pass that folder as manual_dir. The whole "color" task recordings are read,
with every interval (macro and micro) of the sheet 'AU+Emotion'.
{CASME3_LV_LAYOUT}.
"""


def casme3_lv_videos(root: Path, layout: str) -> dict[str, VideoFolder]:
    """Recording name ("spNO.1/a") -> its color/ folder, every task of every subject.

    Raises:
        UserError: no subject folder like spNO.1, or no task with a color/ folder.
    """
    videos = {}
    for subject, subject_dir in sorted(casme3.subject_dirs(root).items()):
        for task_dir in sorted(subject_dir.iterdir()):
            color = child_dir(task_dir, "color") if task_dir.is_dir() else None
            if color is not None:
                videos[f"{subject}/{task_dir.name}"] = VideoFolder(subject, color)
    if not videos:
        raise UserError(f"{root} holds no task recording like spNO.1/a/color/; {layout}")
    return videos


def casme3_lv_video(
    row: SheetRow, folders: Mapping[str, VideoFolder], log: ReleaseLog
) -> str | None:
    """The task recording of a row, its letter compared without case (a differing case is
    noted)."""
    wanted = f"{row.subject}/{row.filename.strip()}"
    names = [name for name in folders if name.lower() == wanted.lower()]
    if not names:
        raise UserError(f"no task recording {wanted}/color/ in the release")
    (name,) = names
    if name != wanted:
        log.add(
            "note",
            row.where,
            f"{row.subject}/{row.filename}",
            f"task {row.filename!r} read as the folder {name} (letter case differs)",
        )
    return name


# The task recordings of a CAS(ME)^3 Part A release with their intervals (raises
# UserError for no workbook, several, or no task folders).
read_casme3_lv = LongVideoReader(
    dataset=DATASET,
    fps=casme3.FPS,
    sheet="*part_A_v2.xls*",
    sheet_depth=3,
    layout=CASME3_LV_LAYOUT,
    subject_folder=casme3.casme3_subject_folder,
    videos=casme3_lv_videos,
    video_of=casme3_lv_video,
)


class Builder(LongVideoBuilder):
    """casme3_lv: one "train" split, one example per task recording."""

    BUILDER_CONFIGS = [LongVideoConfig(name="default", description="Part A color, dlib faces")]
    READER = read_casme3_lv
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
