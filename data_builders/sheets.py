"""Annotation sheets of the MER releases: found by their content, read by header name.

Real coding sheets are written by hand over years and copied between releases, so:

- A sheet is found by its content (`find_annotation`): the database's usual file name is
  the first guess; otherwise any .xlsx/.xls/.csv in the release folder (every sheet of a
  workbook) whose header row holds the required columns is it, whatever its name.
  Several candidates are an error that lists them (`--annotation PATH` chooses one).
- Cells are read by header name (`annotation_rows`): the header row is found by its
  "Subject" cell below any preamble; spacer and unknown columns are ignored; header
  spellings are normalised ("OnsetFrame", "Onset Frame", "Onset"); merged cells count
  in every row they span; blank rows are ignored and text rows (titles, footnotes,
  repeated headers) noted; a row with clip cells but no Subject or Filename is skipped
  with a note; a Subject the database cannot name a folder by skips its row
  (`normalised_rows`).

What the cells of a row mean (frame numbers, apex, action units) is
`data_builders.reading`'s business.
"""

import csv
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import openpyxl

from data_builders.records import ReleaseLog
from mer_jax.errors import UserError

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
    # Long-video sheets: whether an interval is a micro- or a macro-expression.
    "type": "interval_type",
    "expressiontype": "interval_type",
}
# An absent apex column means "no apex annotated"; an absent AU column, no AUs.
REQUIRED_FIELDS = ("subject", "filename", "onset", "offset", "emotion")
# Files that may hold an annotation sheet.
SHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".csv")
# The header row is looked for in this many rows at the top of a sheet (SAMM has ~13
# rows of text above it).
_HEADER_SEARCH_ROWS = 100
# A whole frame number or subject number as a cell holds it: "46", "046", "46.0".
_WHOLE_NUMBER = re.compile(r"(\d+)(?:\.0*)?")


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
    interval_type: str = ""


def cell_text(cell: Any) -> str:
    """A cell as text: 4.0 -> "4" (spreadsheets give numbers where a sheet holds "4"),
    surrounding spaces removed."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def whole_number(text: str) -> int | None:
    """The number of a cell that holds a whole number ("46", "046", "46.0"), else None."""
    match = _WHOLE_NUMBER.fullmatch(text.strip())
    return None if match is None else int(match.group(1))


def _header_key(cell: Any) -> str | None:
    if cell is None:
        return None
    return re.sub(r"[^a-z0-9]", "", str(cell).lower()) or None


@dataclass(frozen=True)
class Table:
    """One sheet of a workbook, or a CSV file, as rows of cell values.

    Attributes:
        path: the file.
        sheet: the sheet's name where the workbook has several sheets, else None.
        rows: the cell values, row by row; cells of a merged range spanning several rows
            all hold the range's value.
        merged: those ranges, e.g. "A3:A5" (noted when the sheet is read).
    """

    path: Path
    sheet: str | None
    rows: tuple[tuple[Any, ...], ...]
    merged: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The file name, and the sheet where it has several: "codes.xlsx [Sheet2]"."""
        return self.path.name + (f" [{self.sheet}]" if self.sheet else "")


def read_tables(path: Path) -> list[Table]:
    """Every sheet of an .xlsx/.xlsm/.xls workbook, or the one table of a .csv file.

    Raises:
        UserError: the file cannot be read as its suffix says; names it.
    """
    try:
        suffix = path.suffix.lower()
        if suffix == ".csv":
            return [Table(path, None, _csv_rows(path))]
        sheets = _xls_sheets(path) if suffix == ".xls" else _xlsx_sheets(path)
    except Exception as error:  # the readers raise many types for a broken file
        raise UserError(f"cannot read {path}: {type(error).__name__}: {error}") from None
    several = len(sheets) > 1
    return [
        Table(path, name if several else None, *_fill_merged(rows, merged))
        for name, rows, merged in sheets
    ]


# (sheet name, rows, merged ranges as 0-based half-open (first row, end row, first
# column, end column)) of a workbook.
_Sheet = tuple[str, list[list[Any]], list[tuple[int, int, int, int]]]


def _xlsx_sheets(path: Path) -> list[_Sheet]:
    # Not read_only: merged ranges are only known to a fully loaded workbook.
    workbook = openpyxl.load_workbook(path, data_only=True)
    try:
        return [
            (
                sheet.title,
                [list(row) for row in sheet.iter_rows(values_only=True)],
                [
                    (r.min_row - 1, r.max_row, r.min_col - 1, r.max_col)
                    for r in sheet.merged_cells.ranges
                ],
            )
            for sheet in workbook.worksheets
        ]
    finally:
        workbook.close()


def _xls_sheets(path: Path) -> list[_Sheet]:
    import xlrd  # Only releases with an old-format .xls sheet need it.

    # formatting_info: xlrd reports merged ranges only with it.
    workbook = xlrd.open_workbook(str(path), formatting_info=True)
    return [
        (
            sheet.name,
            [
                [None if value == "" else value for value in sheet.row_values(index)]
                for index in range(sheet.nrows)
            ],
            list(sheet.merged_cells),
        )
        for sheet in workbook.sheets()
    ]


def _csv_rows(path: Path) -> tuple[tuple[Any, ...], ...]:
    data = path.read_bytes()
    # UTF-8 (with or without a BOM) first; GB18030 covers sheets saved by a Chinese
    # Excel; Latin-1 reads any byte, so a header can still be looked for.
    for encoding in ("utf-8-sig", "gb18030", "latin-1"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    return tuple(
        tuple(value if value.strip() else None for value in row)
        for row in csv.reader(text.splitlines(), dialect)
    )


def _fill_merged(
    rows: list[list[Any]], merged: Iterable[tuple[int, int, int, int]]
) -> tuple[tuple[tuple[Any, ...], ...], tuple[str, ...]]:
    """The rows with every range merged over several rows filled with its value, and
    those ranges as "A3:A5". A range within one row (a title over some columns) is left
    alone: it spans no clip rows."""
    filled = []
    for first_row, end_row, first_col, end_col in sorted(merged):
        if end_row - first_row < 2 or first_row >= len(rows):
            continue
        row = rows[first_row]
        value = row[first_col] if first_col < len(row) else None
        for index in range(first_row, min(end_row, len(rows))):
            rows[index] += [None] * (end_col - len(rows[index]))
            rows[index][first_col:end_col] = [value] * (end_col - first_col)
        filled.append(
            f"{_column_letter(first_col)}{first_row + 1}:{_column_letter(end_col - 1)}{end_row}"
        )
    return tuple(tuple(row) for row in rows), tuple(filled)


def _column_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


@dataclass(frozen=True)
class Header:
    """The header row of a sheet.

    Attributes:
        row_number: its 1-based row number; 0 for a sheet without a header row, whose
            columns a reader knows by position (CAS(ME)^2's main sheet).
        columns: field -> 0-based column index (the first column of each field).
        missing: required fields without a column.
        repeated: header texts of fields with more than one column (only the first is
            read).
    """

    row_number: int
    columns: dict[str, int]
    missing: tuple[str, ...]
    repeated: tuple[str, ...] = ()


def find_header(
    table: Table, header_aliases: Mapping[str, str], required: Sequence[str]
) -> Header | None:
    """The first row near the top of `table` with a cell that maps to "subject", or None."""
    for index, row in enumerate(table.rows[:_HEADER_SEARCH_ROWS]):
        fields = [header_aliases.get(_header_key(cell) or "") for cell in row]
        if "subject" not in fields:
            continue
        columns: dict[str, int] = {}
        repeated = []
        for column, name in enumerate(fields):
            if name is None:
                continue
            if name in columns:
                repeated.append(f"{row[columns[name]]!s} / {row[column]!s}")
            columns.setdefault(name, column)
        missing = tuple(name for name in required if name not in columns)
        return Header(index + 1, columns, missing, tuple(repeated))
    return None


@dataclass(frozen=True)
class Annotation:
    """The annotation sheet of a release and its header."""

    table: Table
    header: Header


def find_annotation(
    root: Path,
    *,
    pattern: str,
    layout: str,
    depth: int,
    log: ReleaseLog,
    chosen: Path | None = None,
    header_aliases: Mapping[str, str] = HEADER_ALIASES,
    required: Sequence[str] = REQUIRED_FIELDS,
    other_sheets: str | None = None,
    headerless: Callable[[Table], Header | None] | None = None,
) -> Annotation:
    """The release's annotation sheet: the one sheet whose header holds `required`.

    The files matching `pattern` (a glob, case-insensitive) in `root` or up to `depth`
    folders below it are the first guess; if none of them holds the columns, every
    .xlsx/.xls/.csv there is looked at (the landmarks/ folder aside). At each step the
    shallowest folder with candidates wins: the release's own sheet sits at its top. A
    sheet found by its columns alone is noted, with its name.

    Args:
        root: the release folder.
        pattern: the usual file name, e.g. "CASME2-coding-*.xlsx".
        layout: the expected layout, quoted in errors.
        depth: how many folders below root to look.
        log: receives the notes (a sheet found by content, files that cannot be read).
        chosen: the user's choice (`--annotation PATH`, or PATH#SHEET for one sheet of a
            workbook), read wherever it is.
        header_aliases, required: as `find_header`.
        other_sheets: a glob of the release's other sheets with the same columns, never
            candidates (CAS(ME)^3's micro- and macro-expression sheets).
        headerless: the columns of a sheet without a header row that the database
            recognises by its rows (`Header.row_number` 0), or None: CAS(ME)^2's main
            sheet.

    Raises:
        UserError: root is no folder; no sheet holds the columns (the message lists the
            files looked at and what each lacks); several do (the message lists them and
            how to choose one); the chosen file is unreadable or lacks the columns.
    """
    if chosen is not None:
        return _chosen_annotation(chosen, header_aliases, required, headerless)
    if not root.is_dir():
        raise UserError(f"release folder {root} does not exist; {layout}")
    regex = re.compile(_glob_regex(pattern), re.IGNORECASE)
    other = re.compile(_glob_regex(other_sheets or ""), re.IGNORECASE)
    files = [(level, path) for level, path in _sheet_files(root, depth)
             if not (other_sheets and other.fullmatch(path.name))]  # fmt: skip
    named = [(level, path) for level, path in files if regex.fullmatch(path.name)]
    others = [(level, path) for level, path in files if not regex.fullmatch(path.name)]
    lacking: list[str] = []
    for group in (named, others):
        candidates = _candidates(group, header_aliases, required, log, lacking, headerless)
        if len(candidates) > 1:
            shown = ", ".join(_relative(annotation.table, root) for annotation in candidates)
            raise UserError(
                f"{root} holds {len(candidates)} annotation sheets with the columns "
                f"{', '.join(required)}: {shown}. Choose one with --annotation PATH "
                "(python -m data_builders.cli; PATH#SHEET for one sheet of a workbook), or "
                "move the others out of the release folder"
            )
        if candidates:
            (annotation,) = candidates
            if group is others:
                log.add(
                    "note",
                    _relative(annotation.table, root),
                    "",
                    f"annotation sheet found by its columns; its name does not match {pattern}",
                )
            return annotation
    looked = "; ".join(lacking) if lacking else "no .xlsx/.xls/.csv file"
    raise UserError(
        f"{root} holds no annotation sheet with the columns {', '.join(required)} (looked "
        f"at: {looked}); {layout}"
    )


def _glob_regex(pattern: str) -> str:
    return "".join(".*" if char == "*" else re.escape(char) for char in pattern)


def _sheet_files(root: Path, depth: int) -> list[tuple[int, Path]]:
    """(folder level, path) of every possible sheet file in root and `depth` levels below."""
    found = []
    for folder, subfolders, files in os.walk(root):
        level = len(Path(folder).relative_to(root).parts)
        if level == 0:
            # Landmarks sidecars are CSV files too, thousands of them.
            subfolders[:] = [name for name in subfolders if name.lower() != "landmarks"]
        if level >= depth:
            subfolders.clear()
        found += [
            (level, Path(folder) / name)
            for name in sorted(files)
            # Office lock files ("~$name.xlsx") are not sheets.
            if name.lower().endswith(SHEET_SUFFIXES) and not name.startswith("~$")
        ]
    return sorted(found)


def _candidates(
    files: Sequence[tuple[int, Path]],
    header_aliases: Mapping[str, str],
    required: Sequence[str],
    log: ReleaseLog,
    lacking: list[str],
    headerless: Callable[[Table], Header | None] | None,
) -> list[Annotation]:
    """The sheets holding the columns, of the shallowest level that has any; what the
    others lack is appended to `lacking`."""
    by_level: dict[int, list[Annotation]] = {}
    for level, path in files:
        try:
            tables = read_tables(path)
        except UserError as error:
            log.add("note", path.name, "", f"not read while looking for the sheet: {error}")
            continue
        for table in tables:
            header = _header_of(table, header_aliases, required, headerless)
            if header is None:
                lacking.append(f"{table.label}: no header row with a Subject column")
            elif header.missing:
                lacking.append(f"{table.label}: no column for {', '.join(header.missing)}")
            else:
                by_level.setdefault(level, []).append(Annotation(table, header))
    return by_level[min(by_level)] if by_level else []


def _relative(table: Table, root: Path) -> str:
    path = table.path.relative_to(root) if table.path.is_relative_to(root) else table.path
    return str(path) + (f" [{table.sheet}]" if table.sheet else "")


def _header_of(
    table: Table,
    header_aliases: Mapping[str, str],
    required: Sequence[str],
    headerless: Callable[[Table], Header | None] | None,
) -> Header | None:
    """The header row of a table, else the columns of a header-less sheet the database
    recognises."""
    header = find_header(table, header_aliases, required)
    if header is None and headerless is not None:
        header = headerless(table)
    return header


def _chosen_annotation(
    chosen: Path,
    header_aliases: Mapping[str, str],
    required: Sequence[str],
    headerless: Callable[[Table], Header | None] | None,
) -> Annotation:
    """The annotation a user chose: a file, or FILE#SHEET."""
    path, sheet = chosen.expanduser(), None
    if not path.is_file() and "#" in path.name:
        name, _, sheet = path.name.rpartition("#")
        path = path.with_name(name)
    if not path.is_file():
        raise UserError(f"the chosen annotation {chosen} is not a file")
    tables = [t for t in read_tables(path) if sheet is None or t.sheet == sheet]
    if not tables:
        raise UserError(f"the chosen annotation {path} has no sheet named {sheet!r}")
    found, lacking = [], []
    for table in tables:
        header = _header_of(table, header_aliases, required, headerless)
        if header is not None and not header.missing:
            found.append(Annotation(table, header))
        else:
            missing = header.missing if header else ("subject",)
            lacking.append(f"{table.label} lacks {', '.join(missing)}")
    if len(found) != 1:
        what = "; ".join(lacking) if not found else ", ".join(a.table.label for a in found)
        raise UserError(
            f"the chosen annotation {path} must hold exactly one sheet with the columns "
            f"{', '.join(required)} ({what}); choose a sheet with PATH#SHEET"
        )
    return found[0]


def annotation_rows(annotation: Annotation, log: ReleaseLog) -> list[SheetRow]:
    """The clip rows of an annotation sheet, read by header name.

    Columns without a known header (blank spacer columns, Notes, Duration) are ignored.
    Blank rows are ignored; text rows (no Filename and no frame number: titles,
    footnotes) and repeated header rows are noted; a clip row without a Subject or a
    Filename is skipped. Merged cells and repeated columns are noted once.
    """
    table, header = annotation.table, annotation.header
    if table.merged:
        log.add(
            "note",
            table.label,
            "",
            f"merged cells {', '.join(table.merged)} are read as their value in every row "
            "they span",
        )
    if not header.row_number:
        columns = ", ".join(
            f"{_column_letter(index)} {name}" for name, index in sorted(
                header.columns.items(), key=lambda item: item[1]
            )
        )
        log.add("note", table.label, "", f"no header row; columns read by position: {columns}")
    if header.repeated:
        log.add(
            "note",
            f"{table.label} row {header.row_number}",
            "",
            f"repeated columns {', '.join(header.repeated)}: the first of each is read",
        )
    subject_header = (
        _header_key(table.rows[header.row_number - 1][header.columns["subject"]])
        if header.row_number
        else None
    )
    rows = []
    for row_number, row in enumerate(table.rows, start=1):
        if row_number <= header.row_number or not any(cell_text(cell) for cell in row):
            continue
        cells = {
            name: cell_text(row[index]) if index < len(row) else ""
            for name, index in header.columns.items()
        }
        where = f"{table.label} row {row_number}"
        if subject_header and _header_key(cells["subject"]) == subject_header:
            log.add("note", where, "", "a repeated header row")
            continue
        if not cells["subject"] or not cells["filename"]:
            frame_cells = (cells.get(name, "") for name in ("onset", "apex", "offset"))
            if not cells["filename"] and all(whole_number(text) is None for text in frame_cells):
                text = " ".join(cell_text(cell) for cell in row if cell_text(cell))
                log.add("note", where, "", f"not a clip row (text: {text[:60]!r})")
            else:
                absent = " or ".join(
                    column for column in ("Subject", "Filename") if not cells[column.lower()]
                )
                clip = f"{cells['subject']}/{cells['filename']}"
                log.add("skipped", where, clip, f"no {absent} in a row with clip cells")
            continue
        rows.append(
            SheetRow(
                where=where,
                subject=cells["subject"],
                filename=cells["filename"],
                onset=cells["onset"],
                apex=cells.get("apex", ""),
                offset=cells["offset"],
                action_units=cells.get("action_units", ""),
                emotion=cells.get("emotion", ""),
                interval_type=cells.get("interval_type", ""),
            )
        )
    return rows


def normalised_rows(
    annotation: Annotation,
    log: ReleaseLog,
    subject_folder: Callable[[str], str],
    filename_of: Callable[[str], str] = str,
) -> list[SheetRow]:
    """`annotation_rows` with each Subject turned into its folder name and each Filename
    into the clip name a record keeps; a row whose Subject `subject_folder` refuses
    (UserError) is skipped with its message."""
    rows = []
    for row in annotation_rows(annotation, log):
        try:
            subject = subject_folder(row.subject)
        except UserError as error:
            log.add("skipped", row.where, f"{row.subject}/{row.filename}", str(error))
            continue
        rows.append(replace(row, subject=subject, filename=filename_of(row.filename)))
    return rows
