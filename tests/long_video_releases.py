"""Fake long-video releases (CAS(ME)^2, SAMM long videos, CAS(ME)^3 Part A) in their real
layouts, with every class of problem the real workbooks hold planted in each, and what a
dry run must report about each, once.

Not any release's cells: each `Row` is one class of problem (a frame cell that is a
fraction, 0 or -1 for "not coded", an apex outside its interval, an interval listed
twice with two types, an offset past the last frame, a row without a frame folder, ...);
`write_release` writes one of each into the layout's workbook (`LAYOUTS`: a main sheet
without header and naming-rule sheets, preamble rows, an eye-blink sheet, a task letter
in upper case) beside three recordings, one of them never annotated, and an errata CSV.
"""

import csv
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import fake_releases
import numpy as np
import openpyxl

SKIPPED, FIXED, GAPS, NOTES = "skipped", "fixed", "gaps", "notes"
MISSING = -1  # the video index of a row whose recording has no frame folder
NUM_FRAMES = 40  # frames of every recording (CAS(ME)^3's first one lost its first 3)
# px per frame the face of a recording moves: little enough that it is never re-aligned.
FACE_SHIFT = (0.12, 0.0)


@dataclass(frozen=True)
class Row:
    """One interval row: what it plants, its video (0, 1 or MISSING; video 2 is never
    annotated), its frame cells as written, its type and what the dry run must list."""

    what: str
    video: int
    onset: Any
    apex: Any
    offset: Any
    kind: str = "micro"
    expect: tuple[str, ...] = ()


ROWS = [
    Row("a micro-expression", 0, 5, 7, 10),
    Row("frame cells as text", 0, "12", "15", "20", "macro"),
    Row("frame cells as whole floats", 1, 21.0, 23.0, 25.0),
    Row("a fractional onset", 1, 26.5, 28, 30, expect=(SKIPPED,)),
    Row("a fractional onset fixed by an erratum", 1, 2.5, 3, 4, expect=(FIXED,)),
    Row("onset 0: not coded", 1, 0, 4, 8, expect=(SKIPPED,)),
    Row("offset -1: not coded", 0, 30, 32, -1, "macro", expect=(SKIPPED,)),
    Row("apex 0: not coded", 0, 22, 0, 26, expect=(FIXED,)),
    Row("apex -1: not coded", 1, 31, -1, 34, "macro", expect=(FIXED,)),
    Row("an apex outside onset..offset", 1, 10, 18, 14, expect=(FIXED,)),
    Row("the same interval again, as macro", 0, 5, 7, 10, "macro", expect=(SKIPPED,)),
    Row("an offset past the last frame", 0, 35, 38, NUM_FRAMES + 5, "macro", expect=(SKIPPED,)),
    Row("a type neither micro nor macro", 1, 5, 6, 7, "blink", expect=(SKIPPED,)),
    Row("no frame folder", MISSING, 5, 6, 8, expect=(SKIPPED,)),
    Row("dropped by an erratum", 1, 36, 37, 38, expect=(SKIPPED,)),
]
FIXED_BY_ERRATUM = "a fractional onset fixed by an erratum"
DROPPED_BY_ERRATUM = "dropped by an erratum"
# What the release holds once read, errata applied: every row not skipped is kept.
KEPT = [row for row in ROWS if SKIPPED not in row.expect]
INTERVALS = {kind: sum(row.kind == kind for row in KEPT) for kind in ("micro", "macro")}
ERRATA_HEADER = ["dataset", "subject", "filename", "onset", "field", "wrong", "fixed", "reason"]


@dataclass(frozen=True)
class Layout:
    """How a database lays out its recordings and writes a row.

    Attributes:
        videos: the frame folders of videos 0, 1, 2 and of the MISSING one (not written),
            relative to the release root.
        video_names: the builder's names of videos 0, 1, 2.
        subjects: the subject folder of each video (0, 1, 2, MISSING).
        frame_name: the frame file name of each video (0, 1, 2).
        filename: (row index, video) -> the Filename cell.
        type_text: "micro"/"macro"/other -> the type cell.
        write_sheet: (root, rows of cells, problems) -> the label of its interval sheet
            and the sheet row of the first cells; rows of cells are [subject, filename,
            onset, apex, offset, type]; adds its layout's own problems to the Counter.
    """

    videos: tuple[str, str, str, str]
    video_names: tuple[str, str, str]
    subjects: tuple[str, str, str, str]
    frame_name: tuple[str, str, str]
    filename: Callable[[int, int], str]
    type_text: Callable[[str], str]
    write_sheet: Callable[[Path, list[list[Any]], Counter], tuple[str, int]]
    first_frame: tuple[int, int, int] = (1, 1, 1)
    lost: dict[int, list[int]] = field(default_factory=dict)  # video -> frames not on disk


# CAS(ME)^2 -------------------------------------------------------------------------------
_CASME_SQ_EXPRESSIONS = ("disgust1", "anger1", "happy2", "sad1")  # videos 0, 1, 2, MISSING
_CASME_SQ_CODES = ("0101", "0401", "0502", "0201")


def _casme_sq_sheet(root: Path, rows: list[list[Any]], problems: Counter) -> tuple[str, int]:
    path = root / "CAS(ME)^2code_final(Updated).xlsx"
    workbook = openpyxl.Workbook()
    main = workbook.active
    main.title = "Sheet1"
    participants = {"s15": 1, "s16": 2}
    for subject, filename, onset, apex, offset, kind in rows:
        main.append([participants[subject], filename, onset, apex, offset, "4+7", "negative",
                     kind, "disgust"])  # fmt: skip
    rule1 = workbook.create_sheet("naming rule1")
    rule1.append(["participant", "folder"])
    rule1.append([1, "s15"])
    rule1.append([2, 16])
    rule2 = workbook.create_sheet("naming rule2")
    for name, code in zip(_CASME_SQ_EXPRESSIONS, _CASME_SQ_CODES, strict=True):
        rule2.append([code if code != "0401" else 401, name])  # one code stored as a number
    workbook.save(path)
    label = f"{path.name} [Sheet1]"
    problems[(NOTES, label)] += 1  # no header row: read by position
    problems[(NOTES, path.name)] += 1  # the naming rules, from their own sheets
    return label, 1


# SAMM long videos ------------------------------------------------------------------------
def _samm_lv_sheet(root: Path, rows: list[list[Any]], problems: Counter) -> tuple[str, int]:
    del problems  # its preamble is read past silently
    path = root / "SAMM_LongVideos_V3_Release.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["SAMM Long Videos: macro- and micro-movements"])
    sheet.merge_cells("A1:E1")
    sheet.append(["Coded by three FACS coders"])
    sheet.append([])
    sheet.append(["Subject", "Filename", "Inducement Code", "Onset", "Apex", "Offset",
                  "Duration", "Type", "Action Units", "Notes"])  # fmt: skip
    first_row = sheet.max_row + 1
    for subject, filename, onset, apex, offset, kind in rows:
        sheet.append([int(subject), filename, 1, onset, apex, offset, None, kind, "12", ""])
    workbook.save(path)
    return path.name, first_row


# CAS(ME)^3 Part A ------------------------------------------------------------------------
def _casme3_lv_sheet(root: Path, rows: list[list[Any]], problems: Counter) -> tuple[str, int]:
    path = root / "part_A" / "annotation" / "CAS(ME)3_part_A_v2.xlsx"
    path.parent.mkdir(parents=True)
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "AU+Emotion"
    sheet.append(["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Expression type",
                  "Objective class"])  # fmt: skip
    label = f"{path.name} [AU+Emotion]"
    for index, (subject, filename, onset, apex, offset, kind) in enumerate(rows):
        # One task letter in upper case: read as its folder's, noted.
        upper = index == 0
        sheet.append([subject, filename.upper() if upper else filename, onset, apex, offset,
                      "L12", kind, 1])  # fmt: skip
        if upper:
            problems[(NOTES, f"{label} row {sheet.max_row}")] += 1
    # The first frames of video 0 were lost: an interval starting there is skipped.
    sheet.append(["spNO.1", "a", 1, 2, 4, "", "micro-expression", 1])
    problems[(SKIPPED, f"{label} row {sheet.max_row}")] += 1
    blinks = workbook.create_sheet("eye blink")  # no type column: never read
    blinks.append(["Subject", "Filename", "Onset", "Offset"])
    blinks.append(["spNO.1", "a", 8, 9])
    workbook.save(path)
    return label, 2


LAYOUTS = {
    "casme_sq": Layout(
        videos=(
            "rawpic/s15/15_0101disgustingteeth",
            "rawpic/s16/16_0401girlcrashing",
            "rawpic/s16/16_0502funnyerrors",
            "rawpic/s15/15_0201sadmovie",
        ),
        video_names=(
            "s15/15_0101disgustingteeth",
            "s16/16_0401girlcrashing",
            "s16/16_0502funnyerrors",
        ),
        subjects=("s15", "s16", "s16", "s15"),
        frame_name=("img{:03d}.jpg",) * 3,
        filename=lambda index, video: f"{_CASME_SQ_EXPRESSIONS[video]}_{index + 1}",
        type_text=lambda kind: f"{kind}-expression" if kind in ("micro", "macro") else kind,
        write_sheet=_casme_sq_sheet,
    ),
    "samm_lv": Layout(
        videos=(
            "SAMM_longvideos/006_1",
            "SAMM_longvideos/007_2",
            "SAMM_longvideos/007_3",
            "SAMM_longvideos/006_9",
        ),
        video_names=("006_1", "007_2", "007_3"),
        subjects=("006", "007", "007", "006"),
        # 4-digit frame numbers; 5 digits as in a recording of 10,000 frames or more.
        frame_name=("006_1_{:04d}.jpg", "007_2_{:05d}.jpg", "007_3_{:04d}.jpg"),
        filename=lambda index, video: f"{('006_1', '007_2', '007_3', '006_9')[video]}_{index + 1}",
        type_text=lambda kind: {"micro": "Micro - 1/2", "macro": "Macro"}.get(kind, kind),
        write_sheet=_samm_lv_sheet,
    ),
    "casme3_lv": Layout(
        videos=(
            "part_A/data/part_A/spNO.1/a/color",
            "part_A/data/part_A/spNO.2/b/color",
            "part_A/data/part_A/spNO.2/c/color",
            "part_A/data/part_A/spNO.1/d/color",
        ),
        video_names=("spNO.1/a", "spNO.2/b", "spNO.2/c"),
        subjects=("spNO.1", "spNO.2", "spNO.2", "spNO.1"),
        frame_name=("{}.jpg",) * 3,  # unpadded, from 0
        filename=lambda index, video: "abcd"[video],
        type_text=lambda kind: {"micro": "Micro-expression", "macro": "Macro-expression"}.get(
            kind, kind
        ),
        write_sheet=_casme3_lv_sheet,
        first_frame=(3, 0, 0),
        lost={1: [17]},  # a gap inside video 1
    ),
}


@dataclass
class Release:
    """What a dry run of a fake release must show (errata applied).

    Attributes:
        problems: (summary key, where) -> how often it is listed (once each).
        rows: Row.what -> its sheet row's `where`.
        errata: the errata CSV beside the release.
        layout: the layout written.
    """

    problems: Counter
    rows: dict[str, str]
    errata: Path
    layout: Layout


def write_release(name: str, root: Path, *, faces: bool = False) -> Release:
    """The fake release of long-video database `name` in `root` (module docstring).

    Args:
        name: a key of `LAYOUTS`.
        root: the release folder (created).
        faces: frames of a real face (`fake_releases.face_frames`, for a build); else
            8 px gray frames, which only a dry run reads (it opens no image).
    """
    layout = LAYOUTS[name]
    root.mkdir(parents=True)
    problems: Counter = Counter()
    cells = [
        [
            layout.subjects[row.video],
            layout.filename(index, row.video),
            row.onset,
            row.apex,
            row.offset,
            layout.type_text(row.kind),
        ]
        for index, row in enumerate(ROWS)
    ]
    label, first_row = layout.write_sheet(root, cells, problems)
    rows = {}
    for index, row in enumerate(ROWS):
        where = f"{label} row {first_row + index}"
        rows[row.what] = where
        for key in row.expect:
            problems[(key, where)] += 1
    for video in range(3):
        first = layout.first_frame[video]
        lost = layout.lost.get(video, [])
        numbers = [n for n in range(first, NUM_FRAMES + 1) if n not in lost]
        folder = root / layout.videos[video]
        if faces:
            fake_releases.face_frames(
                folder, numbers, layout.frame_name[video], FACE_SHIFT, gray=name == "samm_lv"
            )
        else:
            folder.mkdir(parents=True)
            for number in numbers:
                image = np.full((8, 8), number % 256, np.uint8)
                cv2.imwrite(str(folder / layout.frame_name[video].format(number)), image)
        if lost:
            problems[(GAPS, layout.videos[video])] += 1
    # The recording nobody annotated: kept, noted.
    problems[(NOTES, layout.videos[2])] += 1
    errata = root.parent / f"{name}_errata.csv"
    problems[(NOTES, f"{errata.name} line 4")] += 1  # an erratum matching no row
    _write_errata(name, layout, errata)
    return Release(+problems, rows, errata, layout)


def _write_errata(name: str, layout: Layout, path: Path) -> None:
    index = {row.what: i for i, row in enumerate(ROWS)}
    fixed, dropped = ROWS[index[FIXED_BY_ERRATUM]], ROWS[index[DROPPED_BY_ERRATUM]]
    lines = [
        ERRATA_HEADER,
        [name, layout.subjects[fixed.video], layout.filename(index[FIXED_BY_ERRATUM], 1),
         "2.5", "onset", "2.5", "2", "test: a fraction"],
        [name, layout.subjects[dropped.video], layout.filename(index[DROPPED_BY_ERRATUM], 1),
         "36", "row", "", "", "test: dropped"],
        [name, "nobody", "NOCLIP", "", "apex", "x", "y", "test: unmatched"],
    ]  # fmt: skip
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(lines)


def summary_problems(summary: dict[str, Any]) -> Counter:
    """(summary key, where) -> how often it is listed, over every note list of a summary."""
    keys = ("skipped", "fixed", "gaps", "masked_action_units", "notes")
    return Counter((key, note["where"]) for key in keys for note in summary[key])
