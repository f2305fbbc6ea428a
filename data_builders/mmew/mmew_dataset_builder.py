"""TFDS builder of MMEW: 300 micro-expression clips of 36 subjects at 90 fps.

MMEW files its clips by emotion, not by subject (`Micro_Expression/<emotion>/<Filename>/`):
the reader indexes every clip folder once and finds a row's folder by its Filename. A
clip filed under another emotion than its row says keeps the row's label, and the
difference is reported.
"""

from collections.abc import Sequence
from pathlib import Path

from data_builders.clip_builder import ClipBuilderConfig, ReleaseBuilder
from data_builders.errata import Erratum
from data_builders.reading import ClipSource, child_dir, read_sheet_release
from data_builders.records import ReleaseLog, ReleaseRecords
from data_builders.sheets import SheetRow, find_annotation, whole_number
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


def read_mmew(
    root: str | Path,
    *,
    errata: Sequence[Erratum] | None = None,
    annotation: Path | None = None,
) -> ReleaseRecords:
    """The micro-expression clips of an MMEW release, in sheet order.

    Args:
        root, errata, annotation: the release folder, the corrections to apply and the
            sheet chosen, as for `data_builders.casme2.read_casme2_release`.

    Raises:
        UserError: no sheet, several, or no Micro_Expression/ folder (the message shows
            the layout). Problems of single rows are notes of the release.
    """
    root = Path(root)
    log = ReleaseLog()
    sheet = find_annotation(
        root,
        pattern="MMEW_Micro_Exp*.xlsx",
        layout=MMEW_LAYOUT,
        depth=1,
        log=log,
        chosen=annotation,
    )
    frame_root = child_dir(root, "Micro_Expression")
    if frame_root is None:
        raise UserError(f"{root} has no Micro_Expression/ folder; {MMEW_LAYOUT}")
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

    return read_sheet_release(
        sheet,
        source=ClipSource(DATASET, FPS, False, frame_root, root / "landmarks"),
        subject_folder=mmew_subject_folder,
        clip_dir_of=clip_dir_of,
        errata=errata,
        log=log,
    )


class Builder(ReleaseBuilder):
    """mmew: one "train" split, labels of the mmew_4class protocol."""

    BUILDER_CONFIGS = [ClipBuilderConfig(name="default", description="MMEW frames, dlib faces")]
    PROTOCOL = "mmew_4class"
    DATASETS = (DATASET,)
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def read_release(self, manual_dir: Path) -> ReleaseRecords:
        """The MMEW release in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        return read_mmew(
            manual_dir, errata=self.errata_for(DATASET), annotation=self.chosen_annotation()
        )
