"""Messy fake releases: the classes of problems hand-written coding sheets hold, applied
to every database's layout, with what a dry run must report about each.

Not any real release's cells: each `Case` is one class of problem (an AU cell with
alternatives, an offset of 0, a blank onset, a missing clip folder, ...), and
`write_messy_release` writes one row of each into a coding sheet in the layout of a
database (`LAYOUTS`), with the layout noise around them (preamble, an extra sheet,
an unusual file name, merged Subject cells, a blank row, a footnote). It returns the
problems the dry-run summary must list, each exactly once, as (summary key, where).
"""

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fake_releases
import openpyxl


@dataclass(frozen=True)
class Case:
    """One clip row of a messy sheet.

    Attributes:
        what: the class of problem (or of readable dialect), for messages.
        expect: the summary keys the row must be listed under, once each.
        onset, apex, offset: the frame cells as written (the frames on disk are always
            FRAMES).
        au: the action-unit cell.
        emotion: an index into the layout's known emotions, or the cell text.
        subject: the Subject cell; None: the layout's cell of the row's subject.
        frames: "all" (FRAMES on disk), "none" (no clip folder) or "empty" (a folder
            without images).
        sidecar: whether the clip has a landmarks sidecar (without one, its texture
            frames show no face: the build skips it).
        padded: the Subject, Filename and emotion cells carry stray spaces.
        merged: the Subject cell is merged with the row above's (same subject).
        by_protocol: skipped by the builder's protocol, not by the reader (the
            composite keeps every emotion of an unlisted clip).
    """

    what: str
    expect: tuple[str, ...] = ()
    onset: Any = 10
    apex: Any = 12
    offset: Any = 15
    au: str = "4"
    emotion: int | str = 0
    subject: Any = None
    frames: str = "all"
    sidecar: bool = True
    padded: bool = False
    merged: bool = False
    by_protocol: bool = False


FRAMES = list(range(10, 16))
ERRATA_HEADER = ["dataset", "subject", "filename", "onset", "field", "wrong", "fixed", "reason"]
MASKED, SKIPPED, FIXED, NOTES = "masked_action_units", "skipped", "fixed", "notes"
CASES = [
    # Read as they are: no note.
    Case("AU prefixes and intensity", au="AU4+L10B"),
    Case("an intensity range", au="12B-C", emotion=1),
    Case("a parenthesised group", au="(1+2)+4"),
    Case("full-width separators", au="１２，１４"),
    Case("frame cells as text and float", onset="10.0", apex=12.0, offset=" 15 "),
    Case("stray spaces around names", padded=True),
    Case("merged Subject cells", merged=True, emotion=1),
    Case("a blank apex", apex=None),
    Case("no face in the frames (found by the build only)", sidecar=False),
    # Kept, the AU target masked.
    Case("AU alternatives", (MASKED,), au="4 or 7"),
    Case("parenthesised AU alternatives", (MASKED,), au="(4/7)"),
    Case("an uncertain AU", (MASKED,), au="12?"),
    Case("free text in the AU cell", (MASKED,), au="4+smile"),
    # Kept, the apex treated as not annotated.
    Case("an apex that is no frame number", (FIXED,), apex="peak"),
    Case("an apex outside the clip", (FIXED,), apex=0),
    # Skipped.
    Case("offset 0", (SKIPPED,), offset=0),
    Case("onset after offset", (SKIPPED,), onset=15, apex=None, offset=11),
    Case("a blank onset", (SKIPPED,), onset=None),
    Case("a frame cell in words", (SKIPPED,), offset="last frame"),
    Case("no clip folder", (SKIPPED,), frames="none"),
    Case("an empty clip folder", (SKIPPED,), frames="empty"),
    Case("a Subject that names no folder", (SKIPPED,), subject="someone"),
    Case("an emotion the protocol does not know", (SKIPPED,), emotion="puzzled", by_protocol=True),
]
# The case an erratum fixes (its onset), and the case an erratum drops.
FIXED_BY_ERRATUM = "onset after offset"
DROPPED_BY_ERRATUM = "a blank apex"


@dataclass(frozen=True)
class Layout:
    """Where a sheet database keeps its sheet and frames, and how it writes a row."""

    name: str
    header: list[Any]
    row: Callable[[list[Any]], list[Any]]  # [subject, filename, on, apex, off, au, emo]
    subject_cell: Callable[[int], Any]
    subject_folder: Callable[[int], str]  # as the reader normalises it
    clip_name: Callable[[int, int], str]
    clip_dir: Callable[[Path, int, str, str], Path]  # root, subject, filename, emotion
    frame_root: Callable[[Path], Path]
    frame_name: Callable[[int], str]
    emotions: tuple[str, str]
    usual_sheet: str
    unusual_sheet: str
    preamble: list[list[Any]] = field(default_factory=list)
    # Whether a Subject must name a folder (MMEW files clips by emotion: any name does).
    subject_folders: bool = True


def _samm_row(c: list[Any]) -> list[Any]:
    return [c[0], c[1], 1, c[2], c[3], c[4], "", "Micro", c[5], c[6], 1, ""]


LAYOUTS = {
    "casme2": Layout(
        name="casme2",
        header=fake_releases.CASME2_HEADER,
        row=lambda c: [*c[:5], None, *c[5:]],
        subject_cell=lambda n: n,
        subject_folder=lambda n: f"sub{n:02d}",
        clip_name=lambda n, k: f"EP{k:02d}_{n:02d}f",
        clip_dir=lambda root, n, name, _: root / "CASME2_RAW_selected" / f"sub{n:02d}" / name,
        frame_root=lambda root: root / "CASME2_RAW_selected",
        frame_name=lambda n: "img{}.jpg",
        emotions=("happiness", "disgust"),
        usual_sheet="CASME2-coding-20190701.xlsx",
        unusual_sheet="casme2 codes (final).xlsx",
        preamble=[["CASME II coding"]],
    ),
    "samm": Layout(
        name="samm",
        header=fake_releases.SAMM_HEADER,
        row=_samm_row,
        subject_cell=lambda n: n,
        subject_folder=lambda n: f"{n:03d}",
        clip_name=lambda n, k: f"{n:03d}_{k}_1",
        clip_dir=lambda root, n, name, _: root / "SAMM" / f"{n:03d}" / name,
        frame_root=lambda root: root / "SAMM",
        frame_name=lambda n: f"{n:03d}_{{:05d}}.jpg",
        emotions=("Happiness", "Anger"),
        usual_sheet="SAMM_Micro_FACS_Codes_v2.xlsx",
        unusual_sheet="samm_facs_2018.xlsx",
        preamble=fake_releases.SAMM_PREAMBLE,
    ),
    "casme3": Layout(
        name="casme3",
        header=fake_releases.CASME3_HEADER,
        row=lambda c: [*c[:6], 1, c[6]],
        subject_cell=lambda n: f"spNO.{n}",
        subject_folder=lambda n: f"spNO.{n}",
        clip_name=lambda n, k: chr(ord("a") + k - 1),  # a task recording per case
        clip_dir=lambda root, n, name, _: root / "part_A" / f"spNO.{n}" / name / "color",
        frame_root=lambda root: root / "part_A",
        frame_name=lambda n: "{}.jpg",
        emotions=("happy", "disgust"),
        usual_sheet="annotation/cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        unusual_sheet="annotation/ME labels.xlsx",
    ),
    "mmew": Layout(
        name="mmew",
        header=fake_releases.MMEW_HEADER,
        row=lambda c: [*c, ""],
        subject_cell=lambda n: n,
        subject_folder=lambda n: f"{n:02d}",
        clip_name=lambda n, k: f"S{n:02d}_{k:02d}",
        clip_dir=lambda root, n, name, emotion: (
            root / "Micro_Expression" / emotion.strip().lower() / name
        ),
        frame_root=lambda root: root / "Micro_Expression",
        frame_name=lambda n: "{}.jpg",
        emotions=("happiness", "disgust"),
        usual_sheet="MMEW_Micro_Exp.xlsx",
        unusual_sheet="mmew labels v2.xlsx",
        subject_folders=False,
    ),
}


@dataclass
class Messy:
    """What a dry run of a messy release must show.

    Attributes:
        samples: the clips kept (by the builder, after its protocol's check).
        problems: (summary key, where) -> how often it must be listed (once each).
        rows: case description -> its sheet row's `where`.
        errata: the errata CSV written next to the release (fixes one row, drops one,
            and one entry matches nothing).
    """

    samples: int
    problems: Counter = field(default_factory=Counter)
    rows: dict[str, str] = field(default_factory=dict)
    errata: Path | None = None


def write_messy_release(
    name: str,
    root: Path,
    *,
    unusual_name: bool = True,
    first_subject: int = 1,
    errata_name: str | None = None,
) -> Messy:
    """A messy release of sheet database `name` in `root` (see the module docstring).

    Args:
        name: a key of `LAYOUTS`.
        root: the release folder; a coding sheet already there (the composite fake's)
            gets the messy rows appended instead.
        unusual_name: name a new sheet unlike the database's pattern, in a workbook
            whose first sheet is a read-me (found by its columns, noted).
        first_subject: the subject number of the first case (one subject per case).
        errata_name: the errata CSV next to root (default "<name>_errata.csv"); lines
            are appended to one that exists.

    Returns:
        what the builder's dry run must report, with errata applied (`Messy.errata`).
    """
    layout = LAYOUTS[name]
    sheet_path = root / (layout.unusual_sheet if unusual_name else layout.usual_sheet)
    existing = sheet_path.is_file()
    if existing:
        workbook = openpyxl.load_workbook(sheet_path)
        sheet = workbook.active
    else:
        sheet_path.parent.mkdir(parents=True, exist_ok=True)
        workbook = openpyxl.Workbook()
        sheet = workbook.active
        if unusual_name:
            sheet.title = "read me"
            sheet.append(["Codes of the micro-expressions; see the second sheet."])
            sheet = workbook.create_sheet("codes")
        for row in [*layout.preamble, layout.header]:
            sheet.append(list(row))
    label = sheet_path.name + (f" [{sheet.title}]" if len(workbook.worksheets) > 1 else "")
    messy = Messy(samples=0)
    subject = first_subject - 1
    for index, case in enumerate(CASES):
        subject += 0 if case.merged else 1
        filename = layout.clip_name(subject, index + 1)
        emotion = case.emotion if isinstance(case.emotion, str) else layout.emotions[case.emotion]
        subject_cell = layout.subject_cell(subject) if case.subject is None else case.subject
        cells = [subject_cell, filename, case.onset, case.apex, case.offset, case.au, emotion]
        if case.padded:
            cells[0], cells[1], cells[6] = f" {cells[0]} ", f"{filename} ", f" {emotion}  "
        if case.merged:
            cells[0] = None
        sheet.append(layout.row(cells))
        row_number = sheet.max_row
        if case.merged:
            sheet.merge_cells(start_row=row_number - 1, start_column=1, end_row=row_number,
                              end_column=1)  # fmt: skip
            messy.problems[(NOTES, label)] += 1
        where = f"{label} row {row_number}"
        messy.rows[case.what] = where
        expect = case.expect if case.subject is None or layout.subject_folders else ()
        for key in expect:
            messy.problems[(key, where)] += 1
        messy.samples += SKIPPED not in expect
        _write_frames(layout, root, subject, filename, emotion, case)
        if index == 3:
            sheet.append([])  # a blank row: ignored
    sheet.append([None, None, None, None, None, "* footnote: coded by two coders"])
    messy.problems[(NOTES, f"{label} row {sheet.max_row}")] += 1
    if unusual_name and not existing:
        messy.problems[(NOTES, str(Path(layout.unusual_sheet)) + f" [{sheet.title}]")] += 1
    workbook.save(sheet_path)
    errata_path = root.parent / (errata_name or f"{name}_errata.csv")
    messy.errata = _write_errata(layout, errata_path, messy, first_subject)
    return messy


def _write_frames(
    layout: Layout, root: Path, subject: int, filename: str, emotion: str, case: Case
) -> None:
    clip_dir = layout.clip_dir(root, subject, filename, emotion)
    if case.frames == "none":
        # The subject's folder exists (CAS(ME)^3 finds its subjects by them).
        clip_dir.parent.mkdir(parents=True, exist_ok=True)
        return
    if case.frames == "empty":
        clip_dir.mkdir(parents=True)
        return
    relative = clip_dir.relative_to(layout.frame_root(root))
    sidecar = root / "landmarks" / relative.parent / f"{relative.name}.csv"
    fake_releases.write_clip(
        clip_dir,
        FRAMES,
        layout.frame_name(subject),
        apex=12,
        sidecar=sidecar if case.sidecar else None,
        size=32,
    )


def _write_errata(layout: Layout, path: Path, messy: Messy, first_subject: int) -> Path:
    """An errata CSV: one fixes a skipped row, one drops a kept clip, one matches nothing;
    `messy` is updated to what the dry run shows with them."""
    number = {case.what: index for index, case in enumerate(CASES)}
    fixed, dropped = number[FIXED_BY_ERRATUM], number[DROPPED_BY_ERRATUM]
    lines = list(csv.reader(path.read_text().splitlines())) if path.is_file() else [ERRATA_HEADER]
    for index, correction in ((fixed, ["onset", "15", "10"]), (dropped, ["row", "", ""])):
        subject = first_subject - 1 + _subject_number(CASES, index)
        clip = [layout.subject_folder(subject), layout.clip_name(subject, index + 1)]
        lines.append([layout.name, *clip, "", *correction, f"test: {CASES[index].what}"])
    lines.append([layout.name, "nobody", "NOCLIP", "", "emotion", "x", "y", "test: unmatched"])
    write_csv(path, lines)
    # The fixed row is kept (an erratum applied), the dropped one skipped by its erratum.
    fixed_where, dropped_where = messy.rows[FIXED_BY_ERRATUM], messy.rows[DROPPED_BY_ERRATUM]
    messy.problems[(SKIPPED, fixed_where)] -= 1
    messy.problems[(FIXED, fixed_where)] += 1
    messy.problems[(SKIPPED, dropped_where)] += 1
    messy.problems[(NOTES, f"{path.name} line {len(lines)}")] += 1
    messy.problems = +messy.problems  # drop the zero counts
    return path


def _subject_number(cases: list[Case], index: int) -> int:
    """The subject (counted from 1) of case `index`: merged rows share the one above's."""
    return sum(1 for case in cases[: index + 1] if not case.merged)


def write_csv(path: Path, lines: list[list[Any]]) -> None:
    """A CSV file of `lines`."""
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(lines)


def write_messy_smic(root: Path) -> Messy:
    """A messy SMIC-HS release: `fake_releases.make_smic` (a gap, a stray file, an empty
    clip folder) and folders that cannot be clips, with an errata CSV that drops a clip,
    fixes an emotion and has an entry that matches nothing."""
    fake_releases.make_smic(root)
    micro = root / "HS" / "s1" / "micro"
    fake_releases.write_clip(root / "HS/s3/micro/positive/s3_ne_02", FRAMES, "image{}.bmp")
    fake_releases.write_clip(micro / "surprise" / "extra take", FRAMES, "image{}.bmp")
    twice = micro / "surprise" / "s1_sur_03"
    fake_releases.write_clip(twice, FRAMES, "image{}.bmp")
    (twice / "image010.bmp").write_bytes((twice / "image10.bmp").read_bytes())
    (root / "HS" / "s4" / "macro").mkdir(parents=True)
    (micro / "unsure").mkdir()
    errata = root.parent / "smic_errata.csv"
    write_csv(
        errata,
        [
            ERRATA_HEADER,
            ["smic", "s01", "s01_po_02", "", "row", "", "", "test: dropped"],
            ["smic", "s02", "s02_sur_01", "", "emotion", "surprise", "positive", "test"],
            ["smic", "s09", "s09_ne_09", "", "emotion", "x", "y", "test: unmatched"],
        ],
    )
    problems = Counter(
        {
            ("gaps", "HS/s1/micro/negative/s1_ne_01"): 1,
            (SKIPPED, "HS/s2/micro/surprise/s2_sur_02"): 1,  # empty
            (SKIPPED, "HS/s3/micro/positive/s3_ne_02"): 1,  # in the wrong emotion folder
            (SKIPPED, "HS/s1/micro/surprise/extra take"): 1,  # no clip name
            (SKIPPED, "HS/s1/micro/surprise/s1_sur_03"): 1,  # two files for frame 10
            (NOTES, "HS/s4"): 1,  # no micro/ folder
            (NOTES, "HS/s1/micro/unsure"): 1,  # not an emotion folder
            (SKIPPED, "HS/s1/micro/positive/s1_po_02"): 1,  # dropped by an erratum
            (FIXED, "HS/s2/micro/surprise/s2_sur_01"): 1,
            (NOTES, "smic_errata.csv line 4"): 1,
        }
    )
    return Messy(samples=2, problems=problems, errata=errata)


def write_messy_megc2019(root: Path, list_path: Path) -> Messy:
    """The composite fake (`fake_releases.make_megc2019`: every listed clip) with messy
    rows of unlisted clips in its CASME II and SAMM sheets, and one errata CSV for both
    parts that also fixes a listed clip (its emotion, to one of the same class)."""
    fake_releases.make_megc2019(root, list_path)
    messy = Messy(samples=442)
    for name, first_subject in (("casme2", 40), ("samm", 200)):
        part = write_messy_release(
            name,
            root / name,
            unusual_name=False,
            first_subject=first_subject,
            errata_name="megc2019_errata.csv",
        )
        by_protocol = {part.rows[case.what] for case in CASES if case.by_protocol}
        for (key, where), count in part.problems.items():
            # An unlisted clip of an unknown emotion is no problem of the composite.
            if not (key == SKIPPED and where in by_protocol):
                messy.problems[(key, f"{name}: {where}")] += count
        messy.errata = part.errata
    lines = list(csv.reader(messy.errata.read_text().splitlines()))
    lines.append(["casme2", "sub01", "EP19_05f", "", "emotion", "disgust", "repression", "test"])
    write_csv(messy.errata, lines)
    messy.problems[(FIXED, "casme2: CASME2-coding-20190701.xlsx row 3")] += 1
    messy.problems[(NOTES, list_path.name)] += 1  # the releases' clips not in the list
    return messy


def summary_problems(summary: dict[str, Any]) -> Counter:
    """(summary key, where) -> how often it is listed, over every note list of a summary."""
    keys = ("skipped", "fixed", "gaps", "masked_action_units", "notes")
    return Counter((key, note["where"]) for key in keys for note in summary[key])
