"""TFDS builder of MMEW: 300 micro-expression clips of 36 subjects at 90 fps.

MMEW files its clips by emotion, not by subject (`Micro_Expression/<emotion>/<Filename>/`):
the reader indexes every clip folder once and finds a row's folder by its Filename. A
clip filed under another emotion than its row says keeps the row's label, and the
difference is reported.
"""

from pathlib import Path

from data_builders.clip_builder import ClipBuilderConfig, SheetReleaseBuilder
from data_builders.reading import Frames, SheetReader, child_dir
from data_builders.records import ReleaseLog
from data_builders.sheets import SheetRow, whole_number
from mer_jax.data.protocols import normalize_emotion
from mer_jax.errors import UserError

DATASET = "mmew"
FPS = 90.0
MMEW_LAYOUT = (
    "expected layout: <root>/MMEW_Micro_Exp.xlsx and frames in "
    "<root>/Micro_Expression/<emotion>/<Filename>/1.jpg (folders by emotion, not subject)"
)
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
MMEW is licence-gated. Request it from its authors (the MMEW page of Xianye Ben's group,
Shandong University, http://www.dpailab.com/database.html, licence agreement signed),
unpack it into one folder and pass that folder as manual_dir. Only the micro-expressions
are read.
{MMEW_LAYOUT}.
Optional landmarks sidecars mirror the clip folders: <root>/landmarks/<emotion>/<Filename>.csv.
"""


def mmew_subject_folder(subject: str) -> str:
    """The subject name of a Subject cell: as written, numbers zero-padded (3, "3.0" ->
    "03").

    The padding is our reading (MMEW has no subject folders); it only keeps the names
    sortable.
    """
    number = whole_number(subject)
    return subject.strip() if number is None else f"{number:02d}"


def mmew_frames(root: Path, layout: str, log: ReleaseLog) -> Frames:
    """MMEW's clip folders, filed by emotion: every one indexed once by its name, and a
    row's found by its Filename (one filed under another emotion than its row says keeps
    the row's, noted)."""
    frame_root = child_dir(root, "Micro_Expression")
    if frame_root is None:
        raise UserError(f"{root} has no Micro_Expression/ folder; {layout}")
    clip_dirs: dict[str, list[Path]] = {}
    for emotion_dir in sorted(path for path in frame_root.iterdir() if path.is_dir()):
        for clip_dir in sorted(path for path in emotion_dir.iterdir() if path.is_dir()):
            clip_dirs.setdefault(clip_dir.name.strip().lower(), []).append(clip_dir)

    def clip_dir_of(row: SheetRow) -> Path | None:
        candidates = clip_dirs.get(row.filename.lower(), [])
        if not candidates:
            return None
        emotion = normalize_emotion(row.emotion)
        same = [path for path in candidates if normalize_emotion(path.parent.name) == emotion]
        chosen = (same or candidates)[0]
        if not same:
            log.add(
                "note",
                row.where,
                f"{row.subject}/{row.filename}",
                f"frames filed under {chosen.parent.name}/ while the row says {row.emotion!r}; "
                "the row's emotion is used",
            )
        return chosen

    return Frames(frame_root, clip_dir_of)


# The micro-expression clips of an MMEW release, in sheet order (raises UserError for no
# sheet, several, or no Micro_Expression/ folder).
read_mmew = SheetReader(
    dataset=DATASET,
    fps=FPS,
    sheet="MMEW_Micro_Exp*.xlsx",
    sheet_depth=1,
    layout=MMEW_LAYOUT,
    subject_folder=mmew_subject_folder,
    frames=mmew_frames,
)


class Builder(SheetReleaseBuilder):
    """mmew: one "train" split, labels of the mmew_4class protocol."""

    BUILDER_CONFIGS = [ClipBuilderConfig(name="default", description="MMEW frames, dlib faces")]
    PROTOCOL = "mmew_4class"
    READER = read_mmew
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
