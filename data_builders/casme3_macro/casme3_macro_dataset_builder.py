"""TFDS builder of `casme3_macro`: CAS(ME)^3 Part A macro-expression clips as frame pairs.

Part A ships whole task recordings as frame folders (`spNO.1/a/color/1.jpg ...`); the
macro-expression sheet cuts clips by onset..offset from them, exactly as the micro
`casme3` builder does with its sheet (same subject folders, same `color` folders, same
handling of lost frames: gaps tolerated and reported, a clip whose onset or offset
frame is missing skipped and reported, a repeated row skipped).

The macro sheet: our assumption, from public code that reads the release, is that it
is `cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx` next to the micro sheet, with
the header `sub, seq, onset, apex, offset, ...emotion` ("sub" = Subject like spNO.1,
"seq" = the task folder like "a"). The file is found as the one .xlsx whose name
contains the config field `annotation_contains` (default "part_A_MaE_label"), else as
the one sheet holding its columns (never the micro sheet; `--annotation` chooses among
several), and the header is read by name, accepting the micro sheet's spellings too
(Subject, Filename, Onset, ...). Neither apex nor emotion is used; row problems are
skipped and noted as for the micro builder.

Subjects are namespaced exactly like the micro builder's (`casme3/spNO.1`, the same
function): CAS(ME)^3 macro clips share their people with its micro clips, and the
pre-training guard compares these names with the downstream test subjects. Clip names
are `<task>_<onset>` (one task recording holds several clips), so pair ids read
`casme3_macro/spNO.1/a_120/130`.
"""

import dataclasses
import re
from dataclasses import replace
from pathlib import Path

from data_builders.casme3.casme3_dataset_builder import (
    CASME3_LICENCE,
    FPS,
    ME_SHEET,
    PART_A_FRAMES,
    casme3_subject_folder,
    part_a_task_frames,
)
from data_builders.macro_pairs import MacroPairsConfig, MacroReleaseBuilder
from data_builders.reading import ClipSource, join_release
from data_builders.records import MacroRelease, ReleaseLog, clip_from_record
from data_builders.sheets import HEADER_ALIASES, find_annotation, normalised_rows
from mer_jax.errors import UserError

DATASET = "casme3_macro"
# The subject namespace: the micro builder's, so the same person has the same name.
SUBJECT_NAMESPACE = "casme3"
DEFAULT_ANNOTATION = "part_A_MaE_label"
# The macro sheet's header words, besides the micro sheet's.
MACRO_HEADER_ALIASES = {
    **HEADER_ALIASES,
    "sub": "subject",
    "seq": "filename",
    "sequence": "filename",
}
_REQUIRED = ("subject", "filename", "onset", "offset")


def casme3_macro_layout(annotation_contains: str) -> str:
    """The expected layout, quoted in errors."""
    return (
        f"expected layout: <root>/.../*{annotation_contains}*.xlsx (e.g. "
        "cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx, at most 3 folders down) and "
        f"{PART_A_FRAMES}"
    )


MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
{CASME3_LICENCE}, unpack Part A and its annotation folder
into one folder and pass that folder as manual_dir. Only the macro-expression rows of
Part A (RGB "color" frames) are read; the sheet name is our assumption: if yours
differs, set --overrides.annotation_contains=<part of its name> (in a config:
data.overrides.annotation_contains).
{casme3_macro_layout(DEFAULT_ANNOTATION)}.
Optional landmarks sidecars, as for the micro builder: <root>/landmarks/spNO.1/a/color.csv.
"""


@dataclasses.dataclass(eq=False)
class Casme3MacroConfig(MacroPairsConfig):
    """The pair options and the macro sheet's name.

    Attributes:
        annotation_contains: the macro sheet is the one .xlsx whose name contains this.
    """

    annotation_contains: str = DEFAULT_ANNOTATION

    def __post_init__(self) -> None:
        """Rejects a sheet name part that would match anything."""
        if not re.fullmatch(r"[A-Za-z0-9_.()+-]+", self.annotation_contains):
            raise UserError(
                f"annotation_contains {self.annotation_contains!r} must be a plain part of a "
                "file name (letters, digits, _ . ( ) + -)"
            )
        super().__post_init__()


def read_casme3_macro(
    root: str | Path,
    *,
    annotation_contains: str = DEFAULT_ANNOTATION,
    annotation: Path | None = None,
) -> MacroRelease:
    """The macro-expression clips of a CAS(ME)^3 Part A release, in sheet order.

    Args:
        root: the release folder.
        annotation_contains: a part of the macro sheet's usual file name (the first
            guess of `find_annotation`).
        annotation: the macro sheet to read; None: found in root.

    Raises:
        UserError: no macro sheet, several, or no subject folders (the message shows the
            layout). Problems of single rows are notes of the release.
    """
    root = Path(root)
    layout = casme3_macro_layout(annotation_contains)
    log = ReleaseLog()
    sheet = find_annotation(
        root,
        pattern=f"*{annotation_contains}*.xlsx",
        layout=layout,
        depth=3,
        log=log,
        chosen=annotation,
        header_aliases=MACRO_HEADER_ALIASES,
        required=_REQUIRED,
        other_sheets=f"*{ME_SHEET}*",  # the micro sheet holds the same columns
    )
    frame_root, clip_dir_of = part_a_task_frames(root, layout)
    rows = [
        # The apex is not used: a macro sheet's apex cell cannot fail or change a clip.
        replace(row, apex="")
        for row in normalised_rows(sheet, log, casme3_subject_folder, str.lower)
    ]
    records = join_release(
        rows,
        annotation=sheet.table.path,
        source=ClipSource(SUBJECT_NAMESPACE, FPS, False, frame_root, root / "landmarks"),
        clip_dir_of=clip_dir_of,
        errata=(),  # the micro sheet's errata are not about these rows
        log=log,
    )
    clips = tuple(
        clip_from_record(record, dataset=DATASET, clip=f"{record.filename}_{record.onset}")
        for record in records.records
    )
    return MacroRelease(DATASET, sheet.table.path, clips, records.notes)


class Builder(MacroReleaseBuilder):
    """casme3_macro: one "train" split of frame pairs of Part A macro-expressions."""

    BUILDER_CONFIGS = [Casme3MacroConfig(name="default", description="Part A color, dlib faces")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    IDENTITIES = "CAS(ME)^3 subject ids (casme3/spNO.N), shared with the micro clips"
    READS_ANNOTATION = True

    def read_release(self, manual_dir: Path) -> MacroRelease:
        """The Part A macro-expression clips in manual_dir (see MANUAL_DOWNLOAD_INSTRUCTIONS)."""
        return read_casme3_macro(
            manual_dir,
            annotation_contains=self.builder_config.annotation_contains,
            annotation=self.chosen_annotation(),
        )
