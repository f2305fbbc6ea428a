"""Tiny fake releases of the licensed MER databases, in their real on-disk layouts.

Each `make_*` writes a release folder with the quirks docs/datasets.md lists for that
database and returns what a reader must find in it (`Expected`). Frames are a smooth
random texture that moves `APEX_SHIFT` px from onset to apex and back, with landmarks
sidecars (the eye positions the alignment uses), except where a test wants dlib to find
a real face (`face_frames`).
"""

import csv
import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import skimage.data

FRAME_SIZE = 96
APEX_SHIFT = 1.0


@dataclass
class Expected:
    """What reading a fake release must give."""

    samples: int
    subjects: set[str]
    labels: dict[str, int] = field(default_factory=dict)  # sample_id -> default-protocol label
    skipped: int = 0
    fixed: int = 0
    gaps: int = 0


@functools.cache
def texture(shift: float, size: int = FRAME_SIZE) -> np.ndarray:
    """A smooth random texture sampled at x - shift (exact sub-pixel motion), gray uint8."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) * (FRAME_SIZE / size)
    x = x - shift * FRAME_SIZE / size
    image = np.zeros((size, size))
    for _ in range(24):
        fx, fy = rng.uniform(-0.2, 0.2, size=2)
        image += np.cos(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    return np.round(255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)


def face_points(shift: float, size: int = FRAME_SIZE) -> np.ndarray:
    """68 landmarks of the fake face: eye rings at 31% and 69% of the width, rest below."""
    scale = size / FRAME_SIZE
    points = np.tile([48.0 * scale + shift, 70.0 * scale], (68, 1))
    ring = 3.0 * scale * np.stack([np.cos(np.arange(6)), np.sin(np.arange(6))], axis=1)
    ring -= ring.mean(axis=0)
    points[36:42] = np.array([30.0 * scale + shift, 40.0 * scale]) + ring
    points[42:48] = np.array([66.0 * scale + shift, 40.0 * scale]) + ring
    return points


def shift_at(number: int, onset: int, apex: int, offset: int) -> float:
    """The motion of a frame: up to APEX_SHIFT at the apex, back down to the offset."""
    if number <= apex:
        return APEX_SHIFT * (number - onset) / max(1, apex - onset)
    return APEX_SHIFT * (offset - number) / max(1, offset - apex)


def write_clip(
    clip_dir: Path,
    numbers: list[int],
    name_of: str,
    *,
    apex: int | None = None,
    sidecar: Path | None = None,
    size: int = FRAME_SIZE,
    color: bool = True,
) -> None:
    """Frames `name_of.format(n)` for n in numbers, and optionally their sidecar."""
    clip_dir.mkdir(parents=True, exist_ok=True)
    onset, offset = numbers[0], numbers[-1]
    apex = (onset + offset) // 2 if apex is None else apex
    header = ["frame"] + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
    lines = [header]
    for number in numbers:
        shift = shift_at(number, onset, apex, offset)
        gray = texture(shift, size)
        image = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR) if color else gray
        cv2.imwrite(str(clip_dir / name_of.format(number)), image)
        points = face_points(shift, size)
        lines.append([number, *np.round(points[:, 0], 3), *np.round(points[:, 1], 3)])
    if sidecar is not None:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        with sidecar.open("w", newline="") as handle:
            csv.writer(handle).writerows(lines)


def face_frames(
    clip_dir: Path, numbers: list[int], name_of: str, shift: tuple[float, float], gray: bool
) -> None:
    """A real face (skimage's astronaut, 256 px) moving by `shift` px per frame."""
    clip_dir.mkdir(parents=True, exist_ok=True)
    face = cv2.resize(skimage.data.astronaut()[:400, 60:460], (256, 256), cv2.INTER_AREA)
    for step, number in enumerate(numbers):
        dx, dy = step * shift[0], step * shift[1]
        moved = cv2.warpAffine(
            face, np.float32([[1, 0, dx], [0, 1, dy]]), (256, 256), borderMode=cv2.BORDER_REFLECT
        )
        image = cv2.cvtColor(moved, cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(clip_dir / name_of.format(number)), image, [cv2.IMWRITE_JPEG_QUALITY, 98])


def write_sheet(path: Path, header: list, rows: list[list], preamble: list[list] = ()) -> None:
    """An .xlsx coding sheet: preamble rows, the header, the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in [*preamble, header, *rows]:
        sheet.append(list(row))
    workbook.save(path)


# CASME II ---------------------------------------------------------------------------
CASME2_HEADER = [
    "Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", None,
    "Action Units", "Estimated Emotion",
]  # fmt: skip
GAP_FRAMES = [100, 101, 102, 103, 105, 106]
# (Subject cell, filename, onset, apex cell, offset, AUs, emotion, frame name, frames)
CASME2_CLIPS = [
    (1, "EP02_01f", 46, 49, 52, "R4+L10", "disgust", "img{}.jpg", None),
    (1, "EP03_02", 8, "/", 14, "12，14", "happiness", "img{}.jpg", None),
    # A frame missing inside the clip: kept, reported as a gap.
    (2, "EP01_11f", 100, 102, 106, "AU6B+12C", "repression", "img{}.jpg", GAP_FRAMES),
    # Zero-padded names in the same release.
    ("sub03", "EP09_05", 7, 9, 12, "4(k)", "others", "img{:03d}.jpg", None),
    (2, "EP05_02", 30, 31, 33, "17", "fear", "img{}.jpg", None),
    # The offset frame is missing: skipped and reported.
    (3, "EP13_01", 20, 22, 25, "1+2", "surprise", "img{}.jpg", [20, 21, 22, 23, 24]),
]  # fmt: skip


def make_casme2(root: Path) -> Expected:
    """A CASME II release: raw and official crops, a title row, a spacer column, a "/" apex,
    .lnk and Thumbs.db strays, zero padding, a gap, a missing offset, a footnote row."""
    rows = [[s, f, on, ap, off, None, au, emo] for s, f, on, ap, off, au, emo, _, _ in CASME2_CLIPS]
    rows.append([None, None, None, None, None, None, None, "* coded by two coders"])
    write_sheet(root / "CASME2-coding-20190701.xlsx", CASME2_HEADER, rows, [["CASME II"]])
    for subject, filename, onset, apex, offset, _, _, name, numbers in CASME2_CLIPS:
        folder = subject if isinstance(subject, str) else f"sub{subject:02d}"
        numbers = numbers or list(range(onset, offset + 1))
        apex = apex if isinstance(apex, int) else None
        sidecar = root / "landmarks" / folder / f"{filename}.csv"
        raw_dir = root / "CASME2_RAW_selected" / folder / filename
        write_clip(raw_dir, numbers, name, apex=apex, sidecar=sidecar)
        write_clip(root / "Cropped" / folder / filename, numbers, "reg_" + name, apex=apex)
        (raw_dir / "Shortcut to EP.lnk").write_bytes(b"L\x00\x00\x00")
        (raw_dir / "Thumbs.db").write_bytes(b"")
    labels = {  # casme2_5class: happiness, disgust, repression, surprise, others
        "casme2/sub01/EP02_01f/46": 1,
        "casme2/sub01/EP03_02/8": 0,
        "casme2/sub02/EP01_11f/100": 2,
        "casme2/sub03/EP09_05/7": 4,
        "casme2/sub02/EP05_02/30": -1,
    }
    # Skipped: the clip whose offset frame is missing (the footnote row is only noted).
    return Expected(5, {"casme2/sub01", "casme2/sub02", "casme2/sub03"}, labels, 1, 0, 1)


# SAMM -------------------------------------------------------------------------------
SAMM_HEADER = [
    "Subject", "Filename", "Inducement Code", "Onset Frame", "Apex Frame", "Offset Frame",
    "Duration", "Micro", "Action Units", "Estimated Emotion", "Objective Classes", "Notes",
]  # fmt: skip
SAMM_PREAMBLE = [["SAMM Micro-Movement Database"], ["Micro FACS codes, version 2"]] + [
    [f"Note {i}: fake text above the header"] for i in range(11)
]
# (Subject, filename, onset, apex, offset, AUs, emotion, frame name)
SAMM_CLIPS = [
    (6, "006_1_2", 5562, 5563, 5565, "4+7", "Anger", "006_{:05d}.jpg"),
    # 4-digit frame numbers and an apex outside onset..offset (fixed: middle frame).
    (7, "007_3_1", 990, 1200, 993, "R12+R14", "Contempt", "007_{:04d}.jpg"),
    (11, "011_2_3", 2030, 2031, 2033, "12A", "Happiness", "011_{:04d}.jpg"),
]
SAMM_SHIFT = (0.6, -0.3)  # px per frame of the fake recordings


def make_samm(root: Path) -> Expected:
    """A SAMM release: 13 preamble rows, bare-integer subjects, 4/5-digit grayscale frames
    of a real face (no sidecars: dlib finds it), an apex outside its clip."""
    rows = [
        [s, f, 1, on, ap, off, off - on + 1, "Micro", au, emo, 4, ""]
        for s, f, on, ap, off, au, emo, _ in SAMM_CLIPS
    ]
    write_sheet(root / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_HEADER, rows, SAMM_PREAMBLE)
    for subject, filename, onset, _, offset, _, _, name in SAMM_CLIPS:
        clip_dir = root / "SAMM" / f"{subject:03d}" / filename
        face_frames(clip_dir, list(range(onset, offset + 1)), name, SAMM_SHIFT, gray=True)
    labels = {"samm/006/006_1_2/5562": 0, "samm/007/007_3_1/990": 1, "samm/011/011_2_3/2030": 2}
    return Expected(3, {"samm/006", "samm/007", "samm/011"}, labels, 0, 1, 0)


# SMIC-HS ----------------------------------------------------------------------------
# (subject folder, emotion folder, clip folder, frame numbers)
SMIC_CLIPS = [
    ("s1", "negative", "s1_ne_01", [17581039, 17581040, 17581042, 17581043]),  # a gap
    ("s1", "positive", "s1_po_02", [17592000, 17592001, 17592002]),
    ("s2", "surprise", "s2_sur_01", [3310, 3311, 3312, 3313]),
]


def make_smic(root: Path) -> Expected:
    """A SMIC-HS release without a sheet: raw HS/ and SMIC_all_cropped/HS/, a frame gap,
    a stray file and an empty clip folder."""
    for subject, emotion, clip, numbers in SMIC_CLIPS:
        relative = Path(subject) / "micro" / emotion / clip
        sidecar = (root / "landmarks" / relative).with_suffix(".csv")
        write_clip(root / "HS" / relative, numbers, "image{:09d}.bmp", sidecar=sidecar)
        cropped = root / "SMIC_all_cropped" / "HS" / relative
        write_clip(cropped, numbers, "reg_image{:09d}.bmp")
    (root / "HS" / "s1" / "micro" / "negative" / "Thumbs.db").write_bytes(b"")
    (root / "HS" / "s2" / "micro" / "surprise" / "s2_sur_02").mkdir()
    labels = {"smic/s01/s01_ne_01/17581039": 0, "smic/s01/s01_po_02/17592000": 1}
    labels["smic/s02/s02_sur_01/3310"] = 2
    return Expected(3, {"smic/s01", "smic/s02"}, labels, 1, 0, 1)


# CAS(ME)^3 Part A -------------------------------------------------------------------
CASME3_HEADER = [
    "Subject",
    "Filename",
    "Onset",
    "Apex",
    "Offset",
    "AU",
    "Objective class",
    "emotion",
]
CASME3_ROWS = [
    ["spNO.1", "A", 5, 7, 10, "L1+L2", 1, "surprise"],
    ["spNO.1", "a", 20, 22, 28, "4", 3, "disgust"],  # same task video, frame 25 lost
    ["spNO.1", "a", 20, 22, 28, "4", 3, "disgust"],  # a repeated row: skipped
    ["spNO.2", "b", 1, 2, 4, "12", 2, "happy"],  # frames 1-3 were lost: skipped
    ["spNO.2", "b", 8, 9, 12, "12", 2, "happy"],
    ["spNO.2", "c", 3, 4, 6, "", 5, "others"],
]
CASME3_FRAMES = {
    ("spNO.1", "a"): [n for n in range(1, 31) if n != 25],
    ("spNO.2", "b"): list(range(4, 14)),
    ("spNO.2", "c"): list(range(1, 8)),
}


def make_casme3(root: Path) -> Expected:
    """A CAS(ME)^3 Part A release: whole task recordings as frame folders, clips cut by
    the sheet, repeated filenames, Filename case unlike the folder's, lost frames."""
    write_sheet(
        root / "annotation" / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx",
        CASME3_HEADER,
        CASME3_ROWS,
    )
    for (subject, task), numbers in CASME3_FRAMES.items():
        task_dir = root / "part_A" / "data" / "part_A" / subject / task
        sidecar = root / "landmarks" / subject / task / "color.csv"
        write_clip(task_dir / "color", numbers, "{}.jpg", sidecar=sidecar)
        (task_dir / "depth").mkdir()
    labels = {  # casme3_4class: negative, positive, surprise, others
        "casme3/spNO.1/a/5": 2,
        "casme3/spNO.1/a/20": 0,
        "casme3/spNO.2/b/8": 1,
        "casme3/spNO.2/c/3": 3,
    }
    return Expected(4, {"casme3/spNO.1", "casme3/spNO.2"}, labels, 2, 0, 1)


# MMEW -------------------------------------------------------------------------------
MMEW_HEADER = [
    "Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
    "Estimated Emotion", "remarks",
]  # fmt: skip
# (Subject, filename, onset, apex, offset, AUs, emotion, emotion folder)
MMEW_CLIPS = [
    (1, "S01_01", 3, 5, 8, "6+12", "happiness", "happiness"),
    (2, "S02_03", 10, 11, 13, "4+9", "disgust", "disgust"),
    (2, "S02_07", 1, 2, 4, "1+2+5", "surprise", "others"),  # filed under another emotion
]


def make_mmew(root: Path) -> Expected:
    """An MMEW release: clip folders keyed by emotion, not subject; one misfiled."""
    rows = [[s, f, on, ap, off, au, emo, ""] for s, f, on, ap, off, au, emo, _ in MMEW_CLIPS]
    write_sheet(root / "MMEW_Micro_Exp.xlsx", MMEW_HEADER, rows)
    for _, filename, onset, apex, offset, _, _, folder in MMEW_CLIPS:
        sidecar = root / "landmarks" / folder / f"{filename}.csv"
        clip_dir = root / "Micro_Expression" / folder / filename
        write_clip(clip_dir, list(range(onset, offset + 1)), "{}.jpg", apex=apex, sidecar=sidecar)
    labels = {"mmew/01/S01_01/3": 1, "mmew/02/S02_03/10": 0, "mmew/02/S02_07/1": 2}
    return Expected(3, {"mmew/01", "mmew/02"}, labels)


# MEGC 2019 composite ----------------------------------------------------------------
COMPOSITE_SIZE = 32  # px: the composite fake has 442 clips, so its frames are tiny
# Emotions that the megc2019_3class protocol maps to each listed label.
COMPOSITE_EMOTIONS = {
    "casme2": ("disgust", "happiness", "surprise"),
    "samm": ("Anger", "Happiness", "Surprise"),
}
SMIC_FOLDERS = {0: ("negative", "ne"), 1: ("positive", "po"), 2: ("surprise", "sur")}
# CASME II clips of the release that the official list leaves out.
CASME2_LEFT_OUT = [("sub04", "EP12_01f", "disgust"), ("sub05", "EP09_05f", "disgust")]


def make_megc2019(root: Path, list_path: Path) -> None:
    """casme2/, samm/ and smic/ releases holding every clip of the official list (3 frames
    each, with sidecars), plus two CASME II disgust clips the list leaves out."""
    with list_path.open(newline="") as handle:
        entries = list(csv.DictReader(handle))
    casme2_rows, samm_rows = [], []
    clip_kwargs = {"size": COMPOSITE_SIZE}
    for entry in entries:
        dataset, subject, filename = entry["dataset"], entry["subject"], entry["filename"]
        label = int(entry["label"])
        if dataset == "casme2":
            casme2_rows.append(
                [subject, filename, 1, 2, 3, None, "4", COMPOSITE_EMOTIONS[dataset][label]]
            )
        elif dataset == "samm":
            samm_rows.append(
                [
                    int(subject),
                    filename,
                    1,
                    11,
                    12,
                    13,
                    3,
                    "Micro",
                    "12",
                    COMPOSITE_EMOTIONS[dataset][label],
                    1,
                    "",
                ]
            )
        else:
            number = int(subject[1:])
            emotion, code = SMIC_FOLDERS[label]
            relative = (
                Path(f"s{number}")
                / "micro"
                / emotion
                / f"s{number}_{code}_{filename.rsplit('_', 1)[1]}"
            )
            sidecar = (root / "smic" / "landmarks" / relative).with_suffix(".csv")
            write_clip(
                root / "smic" / "HS" / relative,
                [5, 6, 7],
                "image{:06d}.bmp",
                sidecar=sidecar,
                **clip_kwargs,
            )
    casme2_rows += [[s, f, 1, 2, 3, None, "4", emotion] for s, f, emotion in CASME2_LEFT_OUT]
    write_sheet(root / "casme2" / "CASME2-coding-20190701.xlsx", CASME2_HEADER, casme2_rows)
    write_sheet(
        root / "samm" / "SAMM_Micro_FACS_Codes_v2.xlsx", SAMM_HEADER, samm_rows, SAMM_PREAMBLE
    )
    for row in casme2_rows:
        subject, filename = row[0], row[1]
        sidecar = root / "casme2" / "landmarks" / subject / f"{filename}.csv"
        clip_dir = root / "casme2" / "CASME2_RAW_selected" / subject / filename
        write_clip(clip_dir, [1, 2, 3], "img{}.jpg", sidecar=sidecar, **clip_kwargs)
    for row in samm_rows:
        subject, filename = f"{row[0]:03d}", row[1]
        sidecar = root / "samm" / "landmarks" / subject / f"{filename}.csv"
        clip_dir = root / "samm" / "SAMM" / subject / filename
        write_clip(
            clip_dir,
            [11, 12, 13],
            f"{subject}_{{:04d}}.jpg",
            sidecar=sidecar,
            color=False,
            **clip_kwargs,
        )
