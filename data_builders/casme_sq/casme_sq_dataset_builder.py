"""TFDS builder of CAS(ME)^2's long videos: whole recordings at 30 fps, for spotting.

The release: `rawpic/s15/15_0101disgustingteeth/img001.jpg`, one folder per recording
below the subject's `sNN` (frames from 1, padded to 3 digits below 1000; more folders
than annotated recordings: the others are kept as recordings without expressions), and
the workbook `CAS(ME)^2code_final*.xlsx`, whose main sheet has no header row. Its
columns, by position: participant, expression name with its number (`anger1_2`), onset,
apex, offset, AUs, objective emotion, expression type, self-reported emotion. Two more
sheets of the workbook are the naming rules: participant index -> subject folder
(`s15`), and expression name (`anger1`) -> the 4-digit video code of the folder name
(`0401`, kept as text; a code Excel stored as a number gets its zeros back). The main
sheet is recognised by its rows and the naming rules by theirs (`naming_rules`);
both are noted in the summary.
"""

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from data_builders.long_video_builder import LongVideoBuilder, LongVideoConfig
from data_builders.reading import LongVideoReader, VideoFolder, child_dir
from data_builders.records import ReleaseLog
from data_builders.sheets import (
    Annotation,
    Header,
    SheetRow,
    Table,
    cell_text,
    normalised_rows,
    read_tables,
    whole_number,
)
from mer_jax.errors import UserError

DATASET = "casme_sq"
FPS = 30.0
CASME_SQ_LAYOUT = (
    "expected layout: <root>/CAS(ME)^2code_final.xlsx (a main sheet without header and "
    "its naming-rule sheets) and frames in <root>/rawpic/s15/15_0101disgustingteeth/img001.jpg"
)
MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
CAS(ME)^2 is licence-gated. Request it from the Institute of Psychology, Chinese Academy
of Sciences (CAS(ME)^2 page of http://casme.psych.ac.cn), unpack it into one folder and
pass that folder as manual_dir. The raw frames (rawpic/) are read.
{CASME_SQ_LAYOUT}.
"""
# The main sheet's columns, by position (it has no header row).
MAIN_COLUMNS = {
    "subject": 0,
    "filename": 1,
    "onset": 2,
    "apex": 3,
    "offset": 4,
    "action_units": 5,
    "emotion": 6,
    "interval_type": 7,
}
_EXPRESSION = re.compile(r"([a-z]+\d*)_\d+", re.IGNORECASE)  # anger1_2: expression anger1
_SUBJECT = re.compile(r"s(\d+)", re.IGNORECASE)
_VIDEO_FOLDER = re.compile(r"\d+_(\d{4})\D.*|\d+_(\d{4})")  # 15_0101disgustingteeth


def main_sheet_columns(table: Table) -> Header | None:
    """The columns of CAS(ME)^2's header-less main sheet (`MAIN_COLUMNS`), for a sheet
    most of whose rows are a participant number and an expression name like anger1_2."""
    rows = [row for row in table.rows if any(cell_text(cell) for cell in row)]
    matching = sum(
        len(row) > MAIN_COLUMNS["interval_type"]
        and whole_number(cell_text(row[0])) is not None
        and _EXPRESSION.fullmatch(cell_text(row[1])) is not None
        for row in rows
    )
    return Header(0, dict(MAIN_COLUMNS), ()) if rows and 2 * matching >= len(rows) else None


@dataclasses.dataclass(frozen=True)
class NamingRules:
    """The naming rules of a CAS(ME)^2 workbook.

    Attributes:
        subjects: participant index -> subject folder ("s15").
        codes: expression name in lower case ("anger1") -> 4-digit video code ("0401").
        sheets: the sheets they were read from.
    """

    subjects: dict[int, str]
    codes: dict[str, str]
    sheets: tuple[str, ...]


def naming_rules(annotation: Annotation) -> NamingRules:
    """The naming rules in the other sheets of the main sheet's workbook: rows of two
    cells, (participant index, sNN or its number) or (expression name, video code), in
    either order; other rows (titles, headers) are passed over.

    Raises:
        UserError: the workbook holds neither rule; names it.
    """
    subjects: dict[int, str] = {}
    codes: dict[str, str] = {}
    sheets = []
    for table in read_tables(annotation.table.path):
        if table.sheet == annotation.table.sheet:
            continue
        found = len(subjects) + len(codes)
        for row in table.rows:
            cells = [cell_text(cell) for cell in row if cell_text(cell)]
            if len(cells) != 2:
                continue
            # (participant, sNN) in either order, or (participant, folder number).
            folder = next((c for c in cells if _SUBJECT.fullmatch(c)), None)
            other = next((c for c in cells if c != folder), cells[0])
            numbers = [whole_number(c) for c in cells]
            if folder is not None and whole_number(other) is not None:
                number = int(_SUBJECT.fullmatch(folder).group(1))
                subjects[whole_number(other)] = f"s{number:02d}"
            elif None not in numbers:
                subjects[numbers[0]] = f"s{numbers[1]:02d}"
            else:  # (expression name, video code) in either order
                name = next((c for c in cells if not c.isdigit()), "")
                code = next((c for c in cells if c.isdigit()), "")
                if name and code and re.search("[a-z]", name, re.IGNORECASE):
                    codes[name.lower()] = code.zfill(4)
        if len(subjects) + len(codes) > found:
            sheets.append(table.label)
    if not subjects or not codes:
        raise UserError(
            f"{annotation.table.path} holds no naming rules (participant -> sNN folder, "
            f"expression name -> video code) beside its main sheet; {CASME_SQ_LAYOUT}"
        )
    return NamingRules(subjects, codes, tuple(sheets))


def casme_sq_videos(root: Path, layout: str) -> dict[str, VideoFolder]:
    """Recording name ("s15/15_0101disgustingteeth") -> its folder, every recording below
    rawpic/sNN/.

    Raises:
        UserError: no rawpic/ folder, or no recording folder in it.
    """
    rawpic = child_dir(root, "rawpic")
    if rawpic is None:
        raise UserError(f"{root} has no rawpic/ folder; {layout}")
    videos = {}
    for subject_dir in sorted(rawpic.iterdir()):
        match = _SUBJECT.fullmatch(subject_dir.name)
        if match is None or not subject_dir.is_dir():
            continue
        subject = f"s{int(match.group(1)):02d}"
        for video_dir in sorted(path for path in subject_dir.iterdir() if path.is_dir()):
            videos[f"{subject_dir.name}/{video_dir.name}"] = VideoFolder(subject, video_dir)
    if not videos:
        raise UserError(f"{rawpic} holds no recording folder like s15/15_0101...; {layout}")
    return videos


@dataclasses.dataclass(frozen=True, kw_only=True)
class CasmeSqReader(LongVideoReader):
    """The long-video reader with CAS(ME)^2's naming rules: the participant cell names the
    subject folder through one, the expression name the recording's code through the
    other."""

    def sheet_rows(self, annotation: Annotation, log: ReleaseLog) -> list[SheetRow]:
        """The main sheet's rows, each participant turned into its subject folder."""
        rules = naming_rules(annotation)
        log.add(
            "note",
            annotation.table.path.name,
            "",
            f"naming rules read from {', '.join(rules.sheets)}: {len(rules.subjects)} "
            f"participants, {len(rules.codes)} expression names",
        )

        def subject_folder(cell: str) -> str:
            folder = rules.subjects.get(whole_number(cell))
            if folder is None:
                raise UserError(f"participant {cell!r} is not in the naming rules")
            return folder

        return normalised_rows(annotation, log, subject_folder)

    def video_lookup(
        self, annotation: Annotation, folders: Mapping[str, VideoFolder], log: ReleaseLog
    ) -> Callable[[SheetRow], str | None]:
        """Row -> its recording: the folder of its subject whose code is its expression's."""
        del log
        codes = naming_rules(annotation).codes

        def video_of(row: SheetRow) -> str:
            match = _EXPRESSION.fullmatch(row.filename.strip())
            code = codes.get(match.group(1).lower()) if match else None
            if code is None:
                raise UserError(
                    f"expression name {row.filename!r} has no video code in the naming rules"
                )
            names = [
                name
                for name, folder in folders.items()
                if folder.subject == row.subject
                and (found := _VIDEO_FOLDER.fullmatch(folder.path.name))
                and code in found.groups()
            ]
            if len(names) != 1:
                shown = "no" if not names else f"{len(names)}"
                raise UserError(
                    f"{shown} recording folders rawpic/{row.subject}/NN_{code}... (its "
                    "expression's video code)"
                )
            return names[0]

        return video_of


# The recordings of a CAS(ME)^2 release with their intervals (raises UserError for no
# workbook, several, no naming rules, or no frame folders).
read_casme_sq = CasmeSqReader(
    dataset=DATASET,
    fps=FPS,
    sheet="CAS(ME)^2code_final*.xlsx",
    sheet_depth=0,
    layout=CASME_SQ_LAYOUT,
    subject_folder=str,  # unused: the participant cell goes through the naming rules
    headerless=main_sheet_columns,
    videos=casme_sq_videos,
)


class Builder(LongVideoBuilder):
    """casme_sq: one "train" split, one example per recording."""

    BUILDER_CONFIGS = [LongVideoConfig(name="default", description="rawpic frames, dlib faces")]
    READER = read_casme_sq
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
