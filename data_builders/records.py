"""Clip records: one labelled micro-expression clip of a database, as found on disk.

Every database reader turns a release directory into a list of `ClipRecord`s; the
clip features (`data_builders.clip_features`) and the TFDS builders only ever see
records, so adding a database means adding a reader here.

CASME II layout (`read_casme2`), as shipped by the CASME II authors:

    <root>/CASME2-coding-<date>.xlsx          the coding sheet
    <root>/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg ...   raw frames, or
    <root>/Cropped/sub01/EP02_01f/reg_img46.jpg ...           face-cropped frames
                                          (also `Cropped-updated/`)
    <root>/landmarks/sub01/EP02_01f.csv       optional landmarks sidecar (see below)

Landmarks sidecar: a CSV with header `frame,x_0,...,x_67,y_0,...,y_67` (the OpenFace
column names; extra columns are ignored), one row per ORIGINAL frame number (the
integer in the frame file name), coordinates in pixels of that frame.
"""

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl

from mer_jax.data.action_units import parse_action_units
from mer_jax.errors import UserError

# Frame folders of a CASME II release, in order of preference: raw frames first, so
# that our own alignment (one transform per clip, from the onset) is what the models see.
_CASME2_FRAME_ROOTS = (
    ("CASME2_RAW_selected", False),
    ("Cropped", True),
    ("Cropped-updated", True),
)
_CASME2_LAYOUT = (
    "expected layout: <root>/CASME2-coding-<date>.xlsx and frames in "
    "<root>/CASME2_RAW_selected/sub01/EP02_01f/img46.jpg (or <root>/Cropped/ or "
    "<root>/Cropped-updated/ with reg_img46.jpg)"
)
# The frame number is the last integer before the image extension: img46.jpg,
# reg_img46.jpg, 006_1_0001.jpg. Anything else in a clip folder (Thumbs.db, .lnk
# shortcuts) is ignored.
_FRAME_FILE = re.compile(r"(\d+)\.(?:jpe?g|bmp|png)$", re.IGNORECASE)

# Coding-sheet header spellings -> field. Headers are compared without case, spaces
# or underscores, so "OnsetFrame", "Onset Frame" and "onset_frame" are one column.
_HEADER_ALIASES = {
    "subject": "subject",
    "filename": "filename",
    "onsetframe": "onset",
    "onset": "onset",
    "apexframe": "apex",
    "apex": "apex",
    "offsetframe": "offset",
    "offset": "offset",
    "actionunits": "action_units",
    "aus": "action_units",
    "estimatedemotion": "emotion",
    "emotion": "emotion",
}
_REQUIRED_FIELDS = ("subject", "filename", "onset", "apex", "offset", "action_units", "emotion")


@dataclass(frozen=True)
class ClipRecord:
    """One labelled clip.

    Attributes:
        dataset: database name, e.g. "casme2".
        subject: namespaced subject, "<dataset>/<subject folder>", e.g. "casme2/sub01",
            so subjects of different databases never merge in a LOSO split.
        filename: the clip name of the coding sheet, e.g. "EP02_01f".
        onset, apex, offset: original frame numbers (the integers in the file names).
            `apex` is always a frame of the clip: where the sheet gives none it is the
            frame nearest the middle of onset..offset.
        apex_annotated: whether `apex` comes from the coding sheet.
        emotion: the emotion label as written in the sheet.
        action_units_raw: the AU string as written in the sheet.
        frame_numbers: the frame numbers present on disk in onset..offset, ascending.
        frame_paths: the files of `frame_numbers`, in the same order.
        fps: frame rate of the recording.
        face_cropped: the frames are already face crops (alignment only resizes).
        landmarks_path: the landmarks sidecar CSV of the clip, if the release has one.
    """

    dataset: str
    subject: str
    filename: str
    onset: int
    apex: int
    offset: int
    apex_annotated: bool
    emotion: str
    action_units_raw: str
    frame_numbers: tuple[int, ...]
    frame_paths: tuple[Path, ...]
    fps: float
    face_cropped: bool
    landmarks_path: Path | None

    @property
    def subject_folder(self) -> str:
        """The subject without the dataset namespace, e.g. "sub01"."""
        return self.subject.rsplit("/", 1)[-1]

    @property
    def sample_id(self) -> str:
        """Unique id: dataset/subject folder/filename/onset (a video may hold several clips)."""
        return f"{self.dataset}/{self.subject_folder}/{self.filename}/{self.onset}"

    def frame_path(self, frame_number: int) -> Path:
        """The file of an original frame number of this clip."""
        try:
            return self.frame_paths[self.frame_numbers.index(frame_number)]
        except ValueError:
            raise KeyError(
                f"clip {self.sample_id} has no frame {frame_number} on disk "
                f"(frames {self.frame_numbers[0]}..{self.frame_numbers[-1]})"
            ) from None


def find_casme2_coding_sheet(root: Path) -> Path:
    """The single CASME2-coding-*.xlsx of a CASME II-layout directory."""
    sheets = sorted(root.glob("CASME2-coding-*.xlsx"))
    if len(sheets) != 1:
        found = "none" if not sheets else ", ".join(sheet.name for sheet in sheets)
        raise UserError(
            f"{root} must hold exactly one CASME2-coding-*.xlsx (found {found}); {_CASME2_LAYOUT}"
        )
    return sheets[0]


def _header_key(cell: Any) -> str | None:
    if cell is None:
        return None
    return re.sub(r"[\s_]+", "", str(cell)).lower() or None


def _cell_text(cell: Any) -> str:
    """A cell as text: 4.0 -> "4" (openpyxl gives numbers where a sheet holds "4")."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _read_sheet_rows(sheet_path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(Excel row number, field -> cell) of every non-empty row below the header.

    The header is the first row holding a "Subject" cell, in the first sheet that has
    one: release sheets carry title rows above it.
    """
    workbook = openpyxl.load_workbook(sheet_path, read_only=True, data_only=True)
    try:
        for worksheet in workbook.worksheets:
            rows = enumerate(worksheet.iter_rows(values_only=True), start=1)
            for header_number, header in rows:
                keys = [_header_key(cell) for cell in header]
                if "subject" not in keys:
                    continue
                # Empty spacer columns have no header and are simply not mapped.
                columns = {
                    _HEADER_ALIASES[key]: index
                    for index, key in enumerate(keys)
                    if key in _HEADER_ALIASES
                }
                missing = [field for field in _REQUIRED_FIELDS if field not in columns]
                if missing:
                    raise UserError(
                        f"{sheet_path.name}, sheet {worksheet.title!r}, header row "
                        f"{header_number}: no column for {', '.join(missing)}; the header "
                        f"holds {[cell for cell in header if cell is not None]}"
                    )
                # The same iterator goes on below the header row.
                return [
                    (
                        row_number,
                        {
                            field: row[index] if index < len(row) else None
                            for field, index in columns.items()
                        },
                    )
                    for row_number, row in rows
                    if any(_cell_text(cell) for cell in row)
                ]
    finally:
        workbook.close()
    raise UserError(
        f"{sheet_path} has no header row with a 'Subject' column in any sheet; {_CASME2_LAYOUT}"
    )


def _subject_folder(cell: Any, where: str) -> str:
    text = _cell_text(cell)
    if text.isdigit():
        return f"sub{int(text):02d}"
    if re.fullmatch(r"sub\d+", text, re.IGNORECASE):
        return text.lower()
    raise UserError(f"{where}: Subject {cell!r} is neither a number nor like 'sub01'")


def _frame_number(cell: Any, column: str, where: str) -> int:
    text = _cell_text(cell)
    if not text.isdigit():
        raise UserError(f"{where}: {column} {cell!r} is not a frame number")
    return int(text)


def list_frames(clip_dir: Path) -> dict[int, Path]:
    """Frame number -> file of every frame image in a clip folder."""
    frames: dict[int, Path] = {}
    for path in clip_dir.iterdir():
        match = _FRAME_FILE.search(path.name)
        if match is None or not path.is_file():
            continue
        number = int(match.group(1))
        if number in frames:
            raise UserError(
                f"{clip_dir} holds two files for frame {number}: {frames[number].name} and "
                f"{path.name}; keep one"
            )
        frames[number] = path
    return frames


def read_casme2(
    root: str | Path, *, dataset: str = "casme2", fps: float = 200.0
) -> list[ClipRecord]:
    """Reads the clips of a CASME II-layout directory, in coding-sheet order.

    Args:
        root: the release directory (see the module docstring for its layout).
        dataset: database name used in `ClipRecord.dataset` and the subject namespace
            (another database in CASME II layout, e.g. "synthetic_me", passes its own).
        fps: frame rate of the recordings (CASME II: 200).

    Raises:
        UserError: no coding sheet or frame folder (the message shows the expected
            layout), a malformed sheet row, a clip whose annotated frames are not on
            disk, or a duplicate clip (the message names the sheet row and the clip).
    """
    root = Path(root)
    sheet_path = find_casme2_coding_sheet(root)
    frame_roots = [(root / name, cropped) for name, cropped in _CASME2_FRAME_ROOTS]
    frame_root, face_cropped = next(
        ((path, cropped) for path, cropped in frame_roots if path.is_dir()), (None, False)
    )
    if frame_root is None:
        raise UserError(f"{root} has no frame folder; {_CASME2_LAYOUT}")

    records: list[ClipRecord] = []
    rows_of_id: dict[str, int] = {}
    for row_number, row in _read_sheet_rows(sheet_path):
        where = f"{sheet_path.name} row {row_number}"
        subject_folder = _subject_folder(row["subject"], where)
        filename = _cell_text(row["filename"])
        onset = _frame_number(row["onset"], "OnsetFrame", where)
        offset = _frame_number(row["offset"], "OffsetFrame", where)
        apex_text = _cell_text(row["apex"])
        # CASME II writes "/" where the coders marked no apex.
        apex_annotated = apex_text not in ("", "/")
        apex = _frame_number(row["apex"], "ApexFrame", where) if apex_annotated else None
        clip = f"clip {subject_folder}/{filename} ({where})"
        if not filename:
            raise UserError(f"{where}: empty Filename")
        if offset < onset or (apex is not None and not onset <= apex <= offset):
            raise UserError(
                f"{clip}: frames must satisfy onset <= apex <= offset; got onset {onset}, "
                f"apex {apex_text or 'none'}, offset {offset}"
            )
        action_units_raw = _cell_text(row["action_units"])
        try:
            parse_action_units(action_units_raw)
        except ValueError as error:
            raise UserError(f"{clip}: {error}") from None

        clip_dir = frame_root / subject_folder / filename
        if not clip_dir.is_dir():
            raise UserError(f"{clip}: frame folder {clip_dir} does not exist")
        frames = {
            number: path
            for number, path in list_frames(clip_dir).items()
            if onset <= number <= offset
        }
        annotated = [onset, offset] + ([apex] if apex is not None else [])
        missing = sorted({number for number in annotated if number not in frames})
        if missing:
            raise UserError(f"{clip}: annotated frame(s) {missing} not found in {clip_dir}")
        if apex is None:
            # No annotated apex: use the frame nearest the middle of the clip, the usual
            # convention (e.g. for SMIC, which has no apex annotation at all).
            middle = (onset + offset) / 2
            apex = min(frames, key=lambda number: (abs(number - middle), number))

        numbers = tuple(sorted(frames))
        record = ClipRecord(
            dataset=dataset,
            subject=f"{dataset}/{subject_folder}",
            filename=filename,
            onset=onset,
            apex=apex,
            offset=offset,
            apex_annotated=apex_annotated,
            emotion=_cell_text(row["emotion"]),
            action_units_raw=action_units_raw,
            frame_numbers=numbers,
            frame_paths=tuple(frames[number] for number in numbers),
            fps=fps,
            face_cropped=face_cropped,
            landmarks_path=_existing(root / "landmarks" / subject_folder / f"{filename}.csv"),
        )
        if record.sample_id in rows_of_id:
            raise UserError(
                f"{clip} repeats row {rows_of_id[record.sample_id]} (same subject, filename "
                "and onset); remove the duplicate row"
            )
        rows_of_id[record.sample_id] = row_number
        records.append(record)
    if not records:
        raise UserError(f"{sheet_path} lists no clips")
    return records


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def read_landmarks_sidecar(path: Path) -> dict[int, np.ndarray]:
    """Original frame number -> float32 (68, 2) landmarks of a sidecar CSV.

    Raises:
        UserError: a missing column or an unreadable row; the message names the file
            and the row.
    """
    with path.open(newline="") as handle:
        rows = csv.reader(handle)
        try:
            header = [name.strip() for name in next(rows)]
        except StopIteration:
            raise UserError(f"landmarks sidecar {path} is empty") from None
        names = ["frame"] + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
        missing = [name for name in names if name not in header]
        if missing:
            raise UserError(
                f"landmarks sidecar {path} lacks column(s) {missing[:4]}...; expected a header "
                "frame,x_0..x_67,y_0..y_67"
            )
        indices = [header.index(name) for name in names]
        landmarks = {}
        for row_number, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                values = [float(row[index]) for index in indices]
            except (ValueError, IndexError):
                raise UserError(
                    f"landmarks sidecar {path} row {row_number} is not numeric"
                ) from None
            points = np.array(values[1:], dtype=np.float32).reshape(2, 68).T
            landmarks[int(values[0])] = points
    return landmarks
