"""TFDS builder of CAS(ME)^3 Part A: 860 micro-expression rows of 94 subjects at 30 fps.

Part A ships whole task recordings as frame folders (`spNO.1/a/color/1.jpg ...`); the
coding sheet (`..._ME_label_JpgIndex_v2.xlsx`, frame numbers are the jpg numbers) cuts
the clips by onset..offset, and one task folder holds several clips, so filenames repeat
and the sample key includes the onset. Frames may be missing inside a clip (the first
frames of some recordings were lost): gaps are tolerated and reported, a clip whose
annotated frames are missing is skipped and reported. The Filename cell's case may
differ from the folder's ("A" / "a"): records keep it in lower case, like the folders
(our reading), so one clip has one sample key.
"""

import os
import re
from collections.abc import Callable
from pathlib import Path

from data_builders.clip_builder import ClipBuilderConfig, SheetReleaseBuilder
from data_builders.reading import Frames, SheetReader, child_dir
from data_builders.sheets import SheetRow, whole_number
from mer_jax.errors import UserError

DATASET = "casme3"
FPS = 30.0
# What the micro- and macro-expression builders read of a release: its Part A frames.
PART_A_FRAMES = (
    "the Part A frames <root>/part_A/.../spNO.1/a/color/1.jpg, one folder of frames per "
    "task recording"
)
CASME3_LAYOUT = (
    "expected layout: <root>/.../cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx (at most 3 "
    f"folders down) and {PART_A_FRAMES}"
)
# Where the release is requested, for both builders.
CASME3_LICENCE = """\
CAS(ME)^3 is licence-gated. Request it from the Institute of Psychology, Chinese Academy
of Sciences (CAS(ME)^3 page of http://casme.psych.ac.cn; see also
https://github.com/jingtingEmmaLi/CAS-ME-3)"""
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
{CASME3_LICENCE}, unpack Part A and its annotation into one
folder and pass that folder as manual_dir. Only the micro-expression rows of Part A
(RGB "color" frames) are read.
{CASME3_LAYOUT}.
Optional landmarks sidecars mirror the task folders below the subjects' parent folder:
<root>/landmarks/spNO.1/a/color.csv (one file per task recording, rows by jpg number).
"""
_SUBJECT = re.compile(r"spno\.(\d+)", re.IGNORECASE)
# A part of the micro-expression sheet's usual name.
ME_SHEET = "part_A_ME_label_JpgIndex"
# How deep below manual_dir the subject folders may sit (part_A/data/part_A/spNO.1).
_SUBJECT_DEPTH = 5


def casme3_subject_folder(subject: str) -> str:
    """The subject folder of a Subject cell: "spNO.1" (any case) or 1 -> "spNO.1".

    Raises:
        UserError: neither form.
    """
    match = _SUBJECT.fullmatch(subject.strip())
    number = int(match.group(1)) if match else whole_number(subject)
    if number is None:
        raise UserError(f"CAS(ME)^3 Subject {subject!r} is not like spNO.1")
    return f"spNO.{number}"


def subject_dirs(root: Path) -> dict[str, Path]:
    """Subject folder name ("spNO.1") -> path, found below root."""
    found: dict[str, Path] = {}
    for folder, subfolders, _ in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        if level == 0 and "landmarks" in subfolders:
            subfolders.remove("landmarks")  # sidecars mirror the subject folders
        for name in list(subfolders):
            match = _SUBJECT.fullmatch(name)
            if match is None:
                continue
            subfolders.remove(name)  # no subject folders inside a subject folder
            subject = f"spNO.{int(match.group(1))}"
            if subject in found:
                raise UserError(
                    f"two folders for subject {subject}: {found[subject]} and "
                    f"{Path(folder) / name}; keep one Part A copy in {root}"
                )
            found[subject] = Path(folder) / name
        if level + 1 >= _SUBJECT_DEPTH:
            subfolders.clear()
    return found


def part_a_task_frames(root: Path, layout: str) -> tuple[Path, Callable[[SheetRow], Path | None]]:
    """The frame root of a Part A release and the "color" frame folder of a sheet row.

    Shared by the micro- and macro-expression builders: both cut clips from the same
    task recordings (`spNO.1/a/color/`).

    Returns:
        (the folder the subject folders sit in, row -> its task's color folder or None).

    Raises:
        UserError: no subject folder like spNO.1 below root; the message shows `layout`.
    """
    subjects = subject_dirs(root)
    if not subjects:
        raise UserError(f"{root} holds no subject folder like spNO.1; {layout}")
    frame_root = Path(os.path.commonpath([path.parent for path in subjects.values()]))

    def clip_dir_of(row: SheetRow) -> Path | None:
        subject_dir = subjects.get(row.subject)
        task_dir = None if subject_dir is None else child_dir(subject_dir, row.filename)
        return None if task_dir is None else child_dir(task_dir, "color")

    return frame_root, clip_dir_of


# The micro-expression clips of a CAS(ME)^3 Part A release, in sheet order (raises
# UserError for no annotation, several, or no subject folders).
read_casme3 = SheetReader(
    dataset=DATASET,
    fps=FPS,
    sheet=f"*{ME_SHEET}*.xlsx",
    sheet_depth=3,
    layout=CASME3_LAYOUT,
    subject_folder=casme3_subject_folder,
    frames=lambda root, layout, log: Frames(*part_a_task_frames(root, layout)),
    other_sheets="*part_A_MaE_*",  # the macro-expression sheet, if it uses our columns
    filename_of=str.lower,
)


class Builder(SheetReleaseBuilder):
    """casme3: one "train" split, labels of the casme3_4class protocol."""

    BUILDER_CONFIGS = [ClipBuilderConfig(name="default", description="Part A color, dlib faces")]
    PROTOCOL = "casme3_4class"
    READER = read_casme3
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
