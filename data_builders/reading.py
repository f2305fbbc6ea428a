"""Reading a release: the rules every database reader shares.

A reader turns a release folder into `data_builders.records`: it reads an annotation,
lists frame folders and never opens an image, so checking a whole release
(`python -m data_builders.cli NAME --manual_dir DIR --dry_run`) is quick. The shared
rules:

- Coding sheets are read by header name: the header row is found by its "Subject" cell,
  below any preamble; spacer columns are dropped; header spellings are normalised
  (`read_annotation_sheet`). A sheet is found by its name pattern (`find_annotation`).
- Frames are matched by the integer in their file name: any zero padding, stray files
  ignored, two files for one number refused (`list_frames`); frames missing inside a
  clip are reported as gaps, a clip whose annotated frames are missing is skipped and
  reported (`clip_record`).
- The errata table is applied and every application logged (`apply_errata`).
- Subjects are namespaced by database; a missing apex falls back to the middle frame;
  a row repeating (subject, filename, onset) is skipped (`join_release`).

Landmarks sidecars (every database): `<root>/landmarks/<clip folder below the frame
root>.csv`, in the format `mer_jax.preprocess.read_landmarks_sidecar` reads.

Each database's own layout is read by the `read_*` function of its builder package
(`data_builders/<name>/`), with these functions.
"""

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import openpyxl

from data_builders.errata import Erratum, errata_of, validate
from data_builders.records import ClipRecord, ReleaseRecords, RowNote
from mer_jax.data.action_units import parse_action_units
from mer_jax.errors import UserError
from mer_jax.preprocess.clip import list_frames

# Normalised header -> field. Headers are compared in lower case with everything but
# letters and digits removed, so "OnsetFrame", "Onset Frame", "onset_frame" and "Onset"
# are one column, and "Objective Class(es)" is "objectiveclasses".
HEADER_ALIASES = {
    "subject": "subject",
    "filename": "filename",
    "onsetframe": "onset",
    "onset": "onset",
    "apexframe": "apex",
    "apex": "apex",
    "offsetframe": "offset",
    "offset": "offset",
    "actionunits": "action_units",
    "actionunit": "action_units",
    "aus": "action_units",
    "au": "action_units",
    "estimatedemotion": "emotion",
    "emotion": "emotion",
    "objectiveclass": "objective_class",
    "objectiveclasses": "objective_class",
}
# An absent apex column means "no apex annotated"; an absent AU column, no AUs.
REQUIRED_FIELDS = ("subject", "filename", "onset", "offset", "emotion")
# Cells that mean "no apex annotated" (CASME II writes "/").
_NO_APEX = frozenset({"", "/", "-", "n/a", "na"})


@dataclass(frozen=True)
class SheetRow:
    """One clip row of an annotation, cells as text ("" for empty or absent cells)."""

    where: str
    subject: str
    filename: str
    onset: str
    apex: str
    offset: str
    action_units: str
    emotion: str


@dataclass
class ReleaseLog:
    """Collects the notes of one reading."""

    notes: list[RowNote] = field(default_factory=list)

    def add(self, kind: str, where: str, clip: str, reason: str) -> None:
        """Records one note."""
        self.notes.append(RowNote(kind, where, clip, reason))

    def notes_of(self, kind: str) -> list[RowNote]:
        """The notes of one kind so far."""
        return [note for note in self.notes if note.kind == kind]


def cell_text(cell: Any) -> str:
    """A cell as text: 4.0 -> "4" (openpyxl gives numbers where a sheet holds "4")."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _header_key(cell: Any) -> str | None:
    if cell is None:
        return None
    return re.sub(r"[^a-z0-9]", "", str(cell).lower()) or None


def find_annotation(root: Path, pattern: str, layout: str, depth: int = 2) -> Path:
    """The single file matching `pattern` in `root` or up to `depth` folders below it.

    Raises:
        UserError: none or several match; the message shows the expected layout.
    """
    if not root.is_dir():
        raise UserError(f"release folder {root} does not exist; {layout}")
    regex = re.compile(_glob_regex(pattern), re.IGNORECASE)
    found = []
    for folder, subfolders, files in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        if level >= depth:
            subfolders.clear()
        # Office lock files ("~$name.xlsx") are not sheets.
        found += [Path(folder) / name for name in files if regex.fullmatch(name)]
        found = [path for path in found if not path.name.startswith("~$")]
        if level == 0 and found:
            break  # a sheet at the top is the release's own
    if len(found) != 1:
        names = "none" if not found else ", ".join(str(path.relative_to(root)) for path in found)
        raise UserError(f"{root} must hold exactly one {pattern} (found {names}); {layout}")
    return found[0]


def _glob_regex(pattern: str) -> str:
    return "".join(".*" if char == "*" else re.escape(char) for char in pattern)


def child_dir(parent: Path, name: str) -> Path | None:
    """The sub-folder of `parent` named `name`, compared without case (releases differ)."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    matches = [
        path for path in parent.iterdir() if path.is_dir() and path.name.lower() == name.lower()
    ]
    return matches[0] if len(matches) == 1 else None


def read_annotation_sheet(
    sheet_path: Path,
    layout: str,
    log: ReleaseLog,
    *,
    header_aliases: Mapping[str, str] = HEADER_ALIASES,
    required: Sequence[str] = REQUIRED_FIELDS,
) -> list[SheetRow]:
    """The clip rows of a coding sheet, read by header name.

    The header is the first row holding a "Subject" cell, in the first sheet that has
    one: release sheets carry title rows (SAMM about 13) above it. Columns without a
    known header (blank spacer columns, Notes, Duration) are ignored. Rows with text but
    no Subject or Filename (footnotes) are skipped and logged.

    Args:
        sheet_path, layout, log: the sheet, the expected layout quoted in errors, and
            where skipped rows are noted.
        header_aliases: normalised header -> field; a sheet with other header words
            (CAS(ME)^3's macro-expression sheet writes "sub", "seq") passes its own. The
            header row is the first holding a cell that maps to "subject".
        required: the fields that must have a column; an absent emotion column reads
            as "" when it is not required.

    Raises:
        UserError: no header row, or a required column missing; the message names the
            file, sheet and header row.
    """
    try:
        workbook = openpyxl.load_workbook(sheet_path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many types for a broken file
        raise UserError(f"cannot read the coding sheet {sheet_path}: {error}") from None
    try:
        for worksheet in workbook.worksheets:
            rows = enumerate(worksheet.iter_rows(values_only=True), start=1)
            for header_number, header in rows:
                keys = [_header_key(cell) for cell in header]
                if "subject" not in (header_aliases.get(key) for key in keys):
                    continue
                columns: dict[str, int] = {}
                for index, key in enumerate(keys):
                    if key in header_aliases:
                        columns.setdefault(header_aliases[key], index)
                missing = [name for name in required if name not in columns]
                if missing:
                    raise UserError(
                        f"{sheet_path.name}, sheet {worksheet.title!r}, header row "
                        f"{header_number}: no column for {', '.join(missing)}; the header "
                        f"holds {[cell for cell in header if cell is not None]}"
                    )
                # The same iterator goes on below the header row.
                return list(_sheet_rows(sheet_path.name, rows, columns, log))
    finally:
        workbook.close()
    raise UserError(
        f"{sheet_path} has no header row with a 'Subject' column in any sheet; {layout}"
    )


def _sheet_rows(
    sheet_name: str,
    rows: Iterable[tuple[int, tuple[Any, ...]]],
    columns: dict[str, int],
    log: ReleaseLog,
) -> Iterator[SheetRow]:
    for row_number, row in rows:
        cells = {
            name: cell_text(row[index]) if index < len(row) else ""
            for name, index in columns.items()
        }
        if not any(cell_text(cell) for cell in row):
            continue
        where = f"{sheet_name} row {row_number}"
        if not cells["subject"] or not cells["filename"]:
            text = " ".join(cell_text(cell) for cell in row if cell_text(cell))
            log.add("skipped", where, "", f"no Subject or Filename (row text: {text[:60]!r})")
            continue
        yield SheetRow(
            where=where,
            subject=cells["subject"],
            filename=cells["filename"],
            onset=cells["onset"],
            apex=cells.get("apex", ""),
            offset=cells["offset"],
            action_units=cells.get("action_units", ""),
            emotion=cells.get("emotion", ""),
        )


def apply_errata(
    rows: Sequence[SheetRow], errata: Sequence[Erratum], log: ReleaseLog, source: str
) -> list[SheetRow]:
    """The rows with every matching erratum applied; each application is logged.

    An erratum whose cell no longer holds the wrong value (a corrected release) is not
    applied, and one that matches no row at all is reported, so a table written for
    another release version never changes data silently.
    """
    validate(errata)
    used: set[int] = set()
    fixed_rows = []
    for row in rows:
        clip = f"{row.subject}/{row.filename}"
        keep = True
        for index, erratum in enumerate(errata):
            if not erratum.matches(row.subject, row.filename, row.onset):
                continue
            used.add(index)
            current = "" if erratum.field == "row" else getattr(row, erratum.field)
            if erratum.field == "row":
                log.add("skipped", row.where, clip, f"erratum: {erratum.describe()}")
                keep = False
            elif current.strip().lower() == erratum.wrong.strip().lower():
                row = replace(row, **{erratum.field: erratum.fixed})
                log.add("fixed", row.where, clip, f"erratum: {erratum.describe()}")
            else:
                log.add(
                    "note",
                    row.where,
                    clip,
                    f"erratum not applied: {erratum.field} is {current!r}, not the expected "
                    f"wrong value {erratum.wrong!r} (already corrected in this release?)",
                )
        if keep:
            fixed_rows.append(row)
    for index, erratum in enumerate(errata):
        if index not in used:
            log.add(
                "note",
                source,
                f"{erratum.subject}/{erratum.filename}",
                f"erratum ({erratum.describe()}) matched no row",
            )
    return fixed_rows


class FrameIndex:
    """Frame listings of clip folders, each folder listed once.

    CAS(ME)^3 cuts many clips from one task folder of thousands of frames.
    """

    def __init__(self) -> None:
        """An empty index."""
        self._listings: dict[Path, dict[int, Path]] = {}

    def frames(self, clip_dir: Path) -> dict[int, Path]:
        """Frame number -> file in `clip_dir` (see `list_frames`)."""
        if clip_dir not in self._listings:
            self._listings[clip_dir] = list_frames(clip_dir)
        return self._listings[clip_dir]


def frame_number(text: str, column: str, where: str) -> int:
    """A frame-number cell as an int.

    Raises:
        UserError: the cell is not a whole non-negative number; names the row.
    """
    if not text.isdigit():
        raise UserError(
            f"{where}: {column} {text!r} is not a frame number; correct the sheet or add an "
            "erratum (data_builders/errata.py)"
        )
    return int(text)


@dataclass(frozen=True)
class ClipSource:
    """How a reader's clips map to disk and to records (shared by all clips of a release).

    Attributes:
        dataset: database name (subject namespace).
        fps: frame rate.
        face_cropped: the frames are face crops already.
        frame_root: the folder the clip folders are found below; sidecars mirror it.
        landmarks_root: the folder of landmarks sidecars.
    """

    dataset: str
    fps: float
    face_cropped: bool
    frame_root: Path
    landmarks_root: Path


def clip_record(
    row: SheetRow,
    *,
    source: ClipSource,
    clip_dir: Path | None,
    frame_index: FrameIndex,
    log: ReleaseLog,
) -> ClipRecord | None:
    """Joins one annotation row with its frame folder; None (and a note) when skipped.

    Args:
        row: the annotation row, errata applied; its subject is the subject folder
            without namespace ("sub01", "006", "s01"), its filename the clip name the
            record keeps.
        source: the release-wide settings.
        clip_dir: the folder holding the clip's frames; None if the reader found none.
        frame_index: shared folder listings.
        log: receives the notes.

    Raises:
        UserError: onset after offset, a frame cell that is not a number or an AU string
            that cannot be read; the message names the sheet and row.
    """
    clip = f"{row.subject}/{row.filename}"
    where = row.where
    onset = frame_number(row.onset, "onset", where)
    offset = frame_number(row.offset, "offset", where)
    if offset < onset:
        raise UserError(
            f"{where} (clip {clip}): onset {onset} is after offset {offset}; correct the "
            "sheet or add an erratum (data_builders/errata.py)"
        )
    apex_annotated = row.apex.strip().lower() not in _NO_APEX
    apex = frame_number(row.apex, "apex", where) if apex_annotated else None
    if apex is not None and not onset <= apex <= offset:
        log.add(
            "fixed",
            where,
            clip,
            f"apex {apex} is outside onset..offset {onset}..{offset}; treated as not "
            "annotated (middle-frame fallback)",
        )
        apex, apex_annotated = None, False
    try:
        parse_action_units(row.action_units)
    except ValueError as error:
        raise UserError(
            f"{where} (clip {clip}): {error}; correct the sheet or add an erratum"
        ) from None

    if clip_dir is None or not clip_dir.is_dir():
        shown = "not found" if clip_dir is None else f"{clip_dir} does not exist"
        log.add("skipped", where, clip, f"frame folder {shown}")
        return None
    frames = {
        number: path
        for number, path in frame_index.frames(clip_dir).items()
        if onset <= number <= offset
    }
    annotated = [onset, offset] + ([apex] if apex is not None else [])
    missing = sorted({number for number in annotated if number not in frames})
    if missing:
        log.add("skipped", where, clip, f"annotated frame(s) {missing} not found in {clip_dir}")
        return None
    gaps = offset - onset + 1 - len(frames)
    if gaps:
        absent = sorted(set(range(onset, offset + 1)) - set(frames))
        shown = ", ".join(map(str, absent[:8])) + (", ..." if len(absent) > 8 else "")
        log.add("gap", where, clip, f"{gaps} frame(s) missing inside the clip: {shown}")
    if apex is None:
        # No annotated apex: the frame nearest the middle of the clip, the usual
        # label-free convention (SMIC has no apex annotation at all).
        middle = (onset + offset) / 2
        apex = min(frames, key=lambda number: (abs(number - middle), number))

    numbers = tuple(sorted(frames))
    relative = clip_dir.relative_to(source.frame_root)
    landmarks_location = source.landmarks_root / relative.parent / f"{relative.name}.csv"
    return ClipRecord(
        dataset=source.dataset,
        subject=f"{source.dataset}/{row.subject}",
        filename=row.filename,
        onset=onset,
        apex=apex,
        offset=offset,
        apex_annotated=apex_annotated,
        emotion=row.emotion,
        action_units_raw=row.action_units,
        frame_numbers=numbers,
        frame_paths=tuple(frames[number] for number in numbers),
        fps=source.fps,
        face_cropped=source.face_cropped,
        landmarks_path=landmarks_location if landmarks_location.is_file() else None,
        where=where,
        landmarks_location=landmarks_location,
    )


def finish_release(
    dataset: str, annotation: Path, records: list[ClipRecord], log: ReleaseLog
) -> ReleaseRecords:
    """The reading's result.

    Raises:
        UserError: no clip was found; the message names the annotation and the first
            reasons rows were skipped.
    """
    if not records:
        reasons = "; ".join(str(note) for note in log.notes_of("skipped")[:3])
        raise UserError(f"{annotation} gives no usable clip" + (f" ({reasons})" if reasons else ""))
    return ReleaseRecords(dataset, annotation, tuple(records), tuple(log.notes))


def join_release(
    rows: Sequence[SheetRow],
    *,
    annotation: Path,
    source: ClipSource,
    clip_dir_of: Callable[[SheetRow], Path | None],
    errata: Sequence[Erratum] | None,
    log: ReleaseLog,
) -> ReleaseRecords:
    """Applies the errata to annotation rows, joins each with its frames, drops repeats.

    Args:
        rows: the clip rows, subjects already normalised to their folder names.
        annotation: the annotation file (or frame folder) named in the notes.
        source: the release-wide settings.
        clip_dir_of: the frame folder of a row; None where the release has none.
        errata: corrections; None: the shipped table of `source.dataset`.
        log: the notes so far (e.g. from reading the sheet); receives the rest.

    Raises:
        UserError: as `clip_record`, or no usable clip at all.
    """
    rows = apply_errata(rows, errata_of(source.dataset, errata), log, annotation.name)
    frame_index = FrameIndex()
    records = []
    # The sample key is (subject, filename, onset): CAS(ME)^3 repeats filenames, whose
    # clips differ by onset; a row repeating a key is skipped.
    first_rows: dict[tuple[str, str, str], SheetRow] = {}
    for row in rows:
        key = (row.subject, row.filename, row.onset)
        if key in first_rows:
            log.add(
                "skipped",
                row.where,
                f"{row.subject}/{row.filename}",
                f"repeats {first_rows[key].where} (same subject, filename and onset)",
            )
            continue
        first_rows[key] = row
        record = clip_record(
            row, source=source, clip_dir=clip_dir_of(row), frame_index=frame_index, log=log
        )
        if record is not None:
            records.append(record)
    return finish_release(source.dataset, annotation, records, log)


def read_sheet_release(
    sheet_path: Path,
    *,
    layout: str,
    source: ClipSource,
    subject_folder: Callable[[str, str], str],
    errata: Sequence[Erratum] | None,
    clip_dir_of: Callable[[SheetRow], Path | None] | None = None,
    log: ReleaseLog | None = None,
    filename_of: Callable[[str], str] = str,
) -> ReleaseRecords:
    """The release of a database with a coding sheet (CASME II, SAMM, CAS(ME)^3, MMEW).

    Args:
        sheet_path: the coding sheet.
        layout: the expected layout, quoted in errors.
        source: the release-wide settings.
        subject_folder: (Subject cell, sheet row) -> subject folder name, raising
            UserError for a cell of the wrong form.
        errata: corrections; None: the shipped table of `source.dataset`.
        clip_dir_of: the frame folder of a row (subject already normalised); None:
            <frame root>/<subject folder>/<Filename>, the layout of most releases.
        log: where `clip_dir_of` puts its own notes, if it has any.
        filename_of: the clip name a record keeps, from the Filename cell.
    """
    log = log or ReleaseLog()
    rows = [
        replace(
            row,
            subject=subject_folder(row.subject, row.where),
            filename=filename_of(row.filename),
        )
        for row in read_annotation_sheet(sheet_path, layout, log)
    ]
    return join_release(
        rows,
        annotation=sheet_path,
        source=source,
        clip_dir_of=clip_dir_of or (lambda row: source.frame_root / row.subject / row.filename),
        errata=errata,
        log=log,
    )
