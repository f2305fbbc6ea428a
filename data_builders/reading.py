"""Reading a release: the rules every database reader shares.

A reader turns a release folder into `data_builders.records`: it reads an annotation
(`data_builders.sheets`: found by its content, read by header name), lists frame
folders and never opens an image, so checking a whole release
(`python -m data_builders.cli NAME --manual_dir DIR --dry_run`) is quick. Real coding
sheets are written by hand over years, so no cell of one stops a reading: every problem
becomes a note with its sheet row and clip, all of them in one pass, and the clips that
can be used are kept. The shared rules:

- Row problems skip the row with a note, never the reading (`clip_record`): a frame
  cell that is blank or not a whole number ("1st frame"; "123.0" is 123), onset after
  offset, a missing clip folder, a folder without frames or with two files for one
  frame number, an annotated frame not on disk. An apex cell that is no frame of the
  clip becomes "not annotated" (noted as fixed); frames missing inside a clip are noted
  as gaps; an action-unit cell that cannot be read is noted and the clip kept with its
  AU target masked (`mer_jax.data.action_units`).
- Frames are matched by the integer in their file name: any zero padding, stray files
  ignored (`list_frames`); folder names are compared without case (`child_path`).
- Errata (the shipped table and the user's CSV) are applied and every application
  logged (`apply_errata`); an entry that matches no row is noted.
- Subjects are namespaced by database; a missing apex falls back to the middle frame;
  a row repeating (subject, filename, onset) is skipped (`join_release`).

Landmarks sidecars (every database): `<root>/landmarks/<clip folder below the frame
root>.csv`, in the format `mer_jax.preprocess.read_landmarks_sidecar` reads.

Each database's own layout is read by the `read_*` function of its builder package
(`data_builders/<name>/`), with these functions; a database read from one coding sheet
declares its reader as a `SheetReader` (the sheet's name, its frame folders, its subject
folder names) and its builder is a `clip_builder.SheetReleaseBuilder`.

Long videos (spotting: CAS(ME)^2, SAMM long videos, CAS(ME)^3 Part A) are read from the
same kind of sheet (`SheetSource`, shared with `SheetReader`) by a `LongVideoReader`,
whose rows become intervals of whole recordings instead of clips (`join_videos`: its
docstring lists what is skipped, fixed and noted); every recording folder is kept,
annotated or not.
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from data_builders.errata import Erratum, errata_of, validate
from data_builders.records import (
    ClipRecord,
    Interval,
    LongVideo,
    ReleaseLog,
    ReleaseRecords,
    VideoRelease,
)
from data_builders.sheets import (
    REQUIRED_FIELDS,
    Annotation,
    Header,
    SheetRow,
    Table,
    find_annotation,
    normalised_rows,
    whole_number,
)
from mer_jax.data.action_units import parse_action_units
from mer_jax.errors import UserError
from mer_jax.preprocess.clip import list_frames

# Cells that mean "no apex annotated" (CASME II writes "/").
_NO_APEX = frozenset({"", "/", "-", "n/a", "na"})


# -- folders and frames -----------------------------------------------------------------


def child_path(parent: Path, name: str) -> Path:
    """The sub-folder of `parent` named `name`, compared without case and surrounding
    spaces (releases differ), or `parent / name` where there is none (or several)."""
    exact = parent / name
    if exact.is_dir() or not parent.is_dir():
        return exact
    wanted = name.strip().lower()
    matches = [
        path for path in parent.iterdir() if path.is_dir() and path.name.strip().lower() == wanted
    ]
    return matches[0] if len(matches) == 1 else exact


def child_dir(parent: Path, name: str) -> Path | None:
    """The sub-folder of `parent` named `name` (see `child_path`), or None."""
    path = child_path(parent, name)
    return path if path.is_dir() else None


class FrameIndex:
    """Frame listings of clip folders, each folder listed once.

    CAS(ME)^3 cuts many clips from one task folder of thousands of frames.
    """

    def __init__(self) -> None:
        """An empty index."""
        self._listings: dict[Path, dict[int, Path] | UserError] = {}

    def frames(self, clip_dir: Path) -> dict[int, Path]:
        """Frame number -> file in `clip_dir` (see `list_frames`; its error is raised
        again for every clip of the folder)."""
        if clip_dir not in self._listings:
            try:
                self._listings[clip_dir] = list_frames(clip_dir)
            except UserError as error:
                self._listings[clip_dir] = error
        listing = self._listings[clip_dir]
        if isinstance(listing, UserError):
            raise listing
        return listing


# -- rows to records --------------------------------------------------------------------


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
            applied = f"erratum{f' ({erratum.source})' if erratum.source else ''}: "
            if erratum.field == "row":
                log.add("skipped", row.where, clip, applied + erratum.describe())
                keep = False
            elif current.strip().lower() == erratum.wrong.strip().lower():
                row = replace(row, **{erratum.field: erratum.fixed})
                log.add("fixed", row.where, clip, applied + erratum.describe())
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
                erratum.source or source,
                f"{erratum.subject}/{erratum.filename}",
                f"erratum ({erratum.describe()}) matched no row",
            )
    return fixed_rows


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


def _zero_hint(*numbers: int) -> str:
    """A hint where a frame cell holds 0, which hand-written sheets use for "not coded"."""
    return " (a 0 cell usually marks a frame that was not coded)" if 0 in numbers else ""


def clip_record(
    row: SheetRow,
    *,
    source: ClipSource,
    clip_dir: Path | None,
    frame_index: FrameIndex,
    log: ReleaseLog,
) -> ClipRecord | None:
    """Joins one annotation row with its frame folder; None (and a note) when skipped.

    Never raises for a problem of the row: see the module docstring for what is skipped,
    fixed or noted. A skipped row gets one note, naming every problem of its frame
    cells.

    Args:
        row: the annotation row, errata applied; its subject is the subject folder
            without namespace ("sub01", "006", "s01"), its filename the clip name the
            record keeps.
        source: the release-wide settings.
        clip_dir: the folder holding the clip's frames; None if the reader found none.
        frame_index: shared folder listings.
        log: receives the notes.
    """
    clip = f"{row.subject}/{row.filename}"
    where = row.where

    def skip(reason: str) -> None:
        log.add("skipped", where, clip, reason)

    onset, offset = whole_number(row.onset), whole_number(row.offset)
    problems = [
        f"{column} cell is blank" if not text else f"{column} {text!r} is not a frame number"
        for column, text, number in (("onset", row.onset, onset), ("offset", row.offset, offset))
        if number is None
    ]
    if onset is None or offset is None:
        return skip("; ".join(problems) + "; correct the sheet or add an erratum (--errata)")
    if offset < onset:
        return skip(
            f"onset {onset} is after offset {offset}{_zero_hint(onset, offset)}; correct the "
            "sheet or add an erratum (--errata)"
        )
    # Notes on a row that is kept, logged once it is (a skipped row has its one note).
    kept_notes: list[tuple[str, str]] = []
    apex_text = row.apex.strip()
    apex = None if apex_text.lower() in _NO_APEX else whole_number(apex_text)
    if apex_text.lower() not in _NO_APEX and (apex is None or not onset <= apex <= offset):
        shown = (
            f"apex {apex_text!r} is not a frame number"
            if apex is None
            else f"apex {apex} is outside onset..offset {onset}..{offset}"
        )
        kept_notes.append(("fixed", f"{shown}; treated as not annotated (middle-frame fallback)"))
        apex = None

    if clip_dir is None or not clip_dir.is_dir():
        shown = "not found" if clip_dir is None else f"{clip_dir} does not exist"
        return skip(f"frame folder {shown}")
    try:
        on_disk = frame_index.frames(clip_dir)
    except UserError as error:
        return skip(str(error))
    if not on_disk:
        return skip(f"no frame images in {clip_dir}")
    frames = {number: path for number, path in on_disk.items() if onset <= number <= offset}
    annotated = [onset, offset] + ([apex] if apex is not None else [])
    missing = sorted({number for number in annotated if number not in frames})
    if missing:
        return skip(f"annotated frame(s) {missing} not found in {clip_dir}{_zero_hint(*missing)}")
    gaps = offset - onset + 1 - len(frames)
    if gaps:
        absent = sorted(set(range(onset, offset + 1)) - set(frames))
        shown = ", ".join(map(str, absent[:8])) + (", ..." if len(absent) > 8 else "")
        kept_notes.append(("gap", f"{gaps} frame(s) missing inside the clip: {shown}"))
    action_units = parse_action_units(row.action_units)
    if action_units.problem:
        kept_notes.append(
            (
                "au",
                f"action units {row.action_units!r} not read ({action_units.problem}); the "
                "clip is kept, its AU target masked (action_units_known = 0)",
            )
        )
    for kind, reason in kept_notes:
        log.add(kind, where, clip, reason)
    apex_annotated = apex is not None
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

    Returns:
        the records and every note; possibly no record at all (see `check_usable`).

    Raises:
        UserError: two errata for one cell.
    """
    rows = apply_errata(rows, errata_of(source.dataset, errata), log, annotation.name)
    frame_index = FrameIndex()
    records = []
    # The sample key is (subject, filename, onset): CAS(ME)^3 repeats filenames, whose
    # clips differ by onset; a row repeating a key is skipped.
    first_rows: dict[tuple[str, str, str], SheetRow] = {}
    for row in rows:
        key = (row.subject.lower(), row.filename.lower(), row.onset)
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
    return ReleaseRecords(source.dataset, annotation, tuple(records), tuple(log.notes))


def check_usable(release: ReleaseRecords | VideoRelease) -> None:
    """A release with at least one usable clip (a long-video release: one annotated
    interval).

    Raises:
        UserError: none; the message names the annotation and every reason a row was
            skipped.
    """
    if isinstance(release, VideoRelease):
        usable, what = any(video.intervals for video in release.videos), "annotated interval"
    else:
        usable, what = bool(release.records), "usable clip"
    if not usable:
        reasons = "\n  ".join(str(note) for note in release.notes_of("skipped"))
        raise UserError(
            f"{release.annotation} gives no {what}" + (f":\n  {reasons}" if reasons else "")
        )


def read_sheet_release(
    annotation: Annotation,
    *,
    source: ClipSource,
    subject_folder: Callable[[str], str],
    errata: Sequence[Erratum] | None,
    log: ReleaseLog,
    clip_dir_of: Callable[[SheetRow], Path | None] | None = None,
    filename_of: Callable[[str], str] = str,
) -> ReleaseRecords:
    """The release of a database with a coding sheet (CASME II, SAMM, CAS(ME)^3, MMEW).

    Args:
        annotation: the coding sheet (`find_annotation`).
        source: the release-wide settings.
        subject_folder: Subject cell -> subject folder name; raises UserError for a cell
            the database cannot name a folder by (the row is then skipped with its
            message).
        errata: corrections; None: the shipped table of `source.dataset`.
        log: the notes so far (finding the sheet; `clip_dir_of`'s own); receives the rest.
        clip_dir_of: the frame folder of a row (subject already normalised); None:
            <frame root>/<subject folder>/<Filename>, the layout of most releases, each
            name compared without case.
        filename_of: the clip name a record keeps, from the Filename cell.
    """
    rows = normalised_rows(annotation, log, subject_folder, filename_of)

    def default_clip_dir(row: SheetRow) -> Path:
        return child_path(child_path(source.frame_root, row.subject), row.filename)

    return join_release(
        rows,
        annotation=annotation.table.path,
        source=source,
        clip_dir_of=clip_dir_of or default_clip_dir,
        errata=errata,
        log=log,
    )


# -- the reader skeleton of the coding-sheet databases ------------------------------------


class Frames(NamedTuple):
    """Where a release's frames are: the folder the clip folders are found below, the
    frame folder of a row (None: <root>/<subject folder>/<Filename>) and whether they are
    face crops already."""

    root: Path
    clip_dir_of: Callable[[SheetRow], Path | None] | None = None
    face_cropped: bool = False


def frame_folder(name: str) -> Callable[[Path, str, ReleaseLog], Frames]:
    """The `SheetReader.frames` of a release whose clips sit in <root>/<name>/<subject
    folder>/<Filename>/ (the name compared without case)."""

    def frames(root: Path, layout: str, log: ReleaseLog) -> Frames:
        del log
        folder = child_dir(root, name)
        if folder is None:
            raise UserError(f"{root} has no {name}/ folder; {layout}")
        return Frames(folder)

    return frames


@dataclass(frozen=True, kw_only=True)
class SheetSource:
    """What a database read from one coding sheet declares about its sheet: shared by the
    clip readers (`SheetReader`) and the long-video readers
    (`data_builders.long_video.LongVideoReader`), which differ only in how rows meet
    frame folders.

    Attributes:
        dataset: database name (subject namespace; whose shipped errata apply).
        fps: frame rate of the recordings.
        sheet: the coding sheet's usual file name, a glob (`sheets.find_annotation`).
        sheet_depth: how many folders below the release folder the sheet may sit.
        layout: the expected layout, quoted in errors.
        subject_folder: Subject cell -> subject folder name (`read_sheet_release`).
        other_sheets: a glob of the release's other sheets with the same columns.
        filename_of: the clip name a record keeps, from the Filename cell.
        required: the fields a sheet's header must hold (`sheets.REQUIRED_FIELDS`).
        headerless: the columns of a main sheet without a header row, recognised by
            its rows (`sheets.find_annotation`).
    """

    dataset: str
    fps: float
    sheet: str
    sheet_depth: int
    layout: str
    subject_folder: Callable[[str], str]
    other_sheets: str | None = None
    filename_of: Callable[[str], str] = str
    required: tuple[str, ...] = REQUIRED_FIELDS
    headerless: Callable[[Table], Header | None] | None = None

    def find_sheet(self, root: Path, log: ReleaseLog, chosen: Path | None) -> Annotation:
        """The coding sheet of the release in root (`sheets.find_annotation`), or the
        user's choice."""
        return find_annotation(
            root,
            pattern=self.sheet,
            layout=self.layout,
            depth=self.sheet_depth,
            log=log,
            chosen=chosen,
            required=self.required,
            other_sheets=self.other_sheets,
            headerless=self.headerless,
        )

    def sheet_rows(self, annotation: Annotation, log: ReleaseLog) -> list[SheetRow]:
        """The rows of the sheet, subjects as folder names (`sheets.normalised_rows`)."""
        return normalised_rows(annotation, log, self.subject_folder, self.filename_of)


@dataclass(frozen=True, kw_only=True)
class SheetReader(SheetSource):
    """A database of clips read from one coding sheet and folders of frames (CASME II,
    SAMM, MMEW, CAS(ME)^3): what differs between them, declared; calling it reads a
    release.

    Attributes (besides `SheetSource`'s):
        frames: (release folder, layout, log) -> its `Frames`; raises UserError (showing
            the layout) where there are none.
    """

    frames: Callable[[Path, str, ReleaseLog], Frames]

    def __call__(
        self,
        root: str | Path,
        *,
        errata: Sequence[Erratum] | None = None,
        annotation: Path | None = None,
    ) -> ReleaseRecords:
        """The clips of the release in `root`, in sheet order.

        Args:
            root: the release folder.
            errata: corrections to apply; None: the shipped table of `dataset`.
            annotation: the sheet the user chose; None: found in root.

        Raises:
            UserError: no coding sheet, several, or no frames (the message shows the
                layout). Problems of single rows are notes of the release.
        """
        root = Path(root)
        log = ReleaseLog()
        sheet = self.find_sheet(root, log, annotation)
        frames = self.frames(root, self.layout, log)
        return read_sheet_release(
            sheet,
            source=ClipSource(
                self.dataset, self.fps, frames.face_cropped, frames.root, root / "landmarks"
            ),
            subject_folder=self.subject_folder,
            clip_dir_of=frames.clip_dir_of,
            errata=errata,
            log=log,
            filename_of=self.filename_of,
        )


# -- long videos: whole recordings and their intervals ------------------------------------

# The fields a long-video sheet must hold: emotion is optional (SAMM's long videos and
# CAS(ME)^3 Part A have none); the type says micro or macro.
LONG_VIDEO_FIELDS = ("subject", "filename", "onset", "offset", "interval_type")
# Frame cells that mean "not coded" in the long-video workbooks.
_NOT_CODED = frozenset({"0", "-1"})
_FRACTION = re.compile(r"-?\d*\.\d+")


@dataclass(frozen=True)
class VideoFolder:
    """A folder of one whole recording: its subject folder (no namespace) and path."""

    subject: str
    path: Path


def interval_type(text: str) -> str | None:
    """"micro" or "macro" from a type cell ("Micro - 1/2", "macro-expression"), else None."""
    kinds = [kind for kind in ("micro", "macro") if kind in text.lower()]
    return kinds[0] if len(kinds) == 1 else None


def _frame_cell(column: str, text: str) -> tuple[int | None, str | None]:
    """(the frame number of a cell, None) or (None, what is wrong with it)."""
    number = whole_number(text)
    if number is not None and text.strip() not in _NOT_CODED:
        return number, None
    if not text:
        return None, f"{column} cell is blank"
    if text.strip() in _NOT_CODED:
        return None, f"{column} {text.strip()} means not coded"
    if _FRACTION.fullmatch(text.strip()):
        return None, f"{column} {text!r} is a fraction, not a frame number"
    return None, f"{column} {text!r} is not a frame number"


@dataclass(frozen=True, kw_only=True)
class LongVideoReader(SheetSource):
    """A long-video (spotting) database read from one coding sheet and one frame folder
    per recording (CAS(ME)^2, SAMM long videos, CAS(ME)^3 Part A): the sheet found and
    read as for clips (`SheetSource`), its rows joined to whole recordings instead of
    cut into clips (`join_videos`).

    Attributes (besides `SheetSource`'s; `required` defaults to `LONG_VIDEO_FIELDS`):
        videos: (release folder, layout) -> video name -> its `VideoFolder`, every
            recording on disk; raises UserError (showing the layout) where there are none.
        video_of: (row, the folders, log) -> the name of the row's video; None, or a
            UserError saying why, where it has none (the row is skipped). None: a
            subclass's `video_lookup` finds them (CAS(ME)^2, through its naming rules).
    """

    required: tuple[str, ...] = LONG_VIDEO_FIELDS
    videos: Callable[[Path, str], dict[str, VideoFolder]]
    video_of: Callable[[SheetRow, Mapping[str, VideoFolder], ReleaseLog], str | None] | None = (
        None
    )

    def video_lookup(
        self, annotation: Annotation, folders: Mapping[str, VideoFolder], log: ReleaseLog
    ) -> Callable[[SheetRow], str | None]:
        """Row -> its video name (`video_of`); a database whose sheet names its videos
        through naming rules in the workbook (CAS(ME)^2) reads them here."""
        del annotation
        video_of = self.video_of
        assert video_of is not None, "a reader without video_of overrides video_lookup"
        return lambda row: video_of(row, folders, log)

    def __call__(
        self,
        root: str | Path,
        *,
        errata: Sequence[Erratum] | None = None,
        annotation: Path | None = None,
    ) -> VideoRelease:
        """Every recording of the release in `root` with its intervals.

        Args:
            root: the release folder.
            errata: corrections to apply; None: the shipped table of `dataset`.
            annotation: the sheet the user chose; None: found in root.

        Raises:
            UserError: no coding sheet, several, or no video folder (the message shows
                the layout). Problems of single rows are notes of the release.
        """
        root = Path(root)
        log = ReleaseLog()
        sheet = self.find_sheet(root, log, annotation)
        rows = self.sheet_rows(sheet, log)
        folders = self.videos(root, self.layout)
        return join_videos(
            rows,
            root=root,
            annotation=sheet.table.path,
            dataset=self.dataset,
            fps=self.fps,
            folders=folders,
            video_of=self.video_lookup(sheet, folders, log),
            errata=errata,
            log=log,
        )


def join_videos(
    rows: Sequence[SheetRow],
    *,
    root: Path,
    annotation: Path,
    dataset: str,
    fps: float,
    folders: Mapping[str, VideoFolder],
    video_of: Callable[[SheetRow], str | None],
    errata: Sequence[Erratum] | None,
    log: ReleaseLog,
) -> VideoRelease:
    """Applies the errata to the rows, turns each into an interval of its video, and
    keeps every video folder with frames, annotated or not.

    A row is skipped (with one note naming every problem of its frame cells) for an
    onset or offset that is blank, 0 or -1 ("not coded"), a fraction or words; an onset
    after its offset; a type that is neither micro nor macro; no frame folder; an
    interval outside the frames on disk (an offset past the last frame, first frames
    lost); an interval listed before (same video, onset and offset), whatever its type.
    An apex of 0 or -1, or one outside onset..offset, is kept as not annotated (the
    middle frame, noted as fixed). A video folder without an annotated interval is kept,
    with none (noted): every interval spotted in it is a false positive. Frames missing
    inside a video are noted once per video.
    """
    root = Path(root)
    rows = apply_errata(rows, errata_of(dataset, errata), log, annotation.name)
    frame_index = FrameIndex()
    intervals: dict[str, list[Interval]] = {name: [] for name in folders}
    first_rows: dict[tuple[str, int, int], SheetRow] = {}
    for row in rows:
        clip = f"{row.subject}/{row.filename}"

        def skip(reason: str, row: SheetRow = row, clip: str = clip) -> None:
            log.add("skipped", row.where, clip, reason)

        (onset, onset_problem), (offset, offset_problem) = (
            _frame_cell("onset", row.onset),
            _frame_cell("offset", row.offset),
        )
        if onset is None or offset is None:
            problems = [problem for problem in (onset_problem, offset_problem) if problem]
            skip("; ".join(problems) + "; correct the sheet or add an erratum (--errata)")
            continue
        if offset < onset:
            skip(f"onset {onset} is after offset {offset}; correct the sheet or add an erratum")
            continue
        kind = interval_type(row.interval_type)
        if kind is None:
            skip(f"type {row.interval_type!r} is neither micro nor macro; add an erratum")
            continue
        try:
            video = video_of(row)
        except UserError as error:
            skip(str(error))
            continue
        if video is None:
            skip("no frame folder of its video")
            continue
        try:
            frames = frame_index.frames(folders[video].path)
        except UserError as error:
            skip(str(error))
            continue
        if not frames:
            skip(f"no frame images in {folders[video].path}")
            continue
        first, last = min(frames), max(frames)
        if onset < first or offset > last:
            why = "an offset past its last frame" if offset > last else "its first frames lost"
            skip(f"onset..offset {onset}..{offset} is outside the frames {first}..{last} of "
                 f"video {video} ({why})")  # fmt: skip
            continue
        key = (video, onset, offset)
        if key in first_rows:
            earlier = first_rows[key]
            differs = interval_type(earlier.interval_type) != kind
            skip(
                f"the interval {onset}..{offset} of video {video} is listed already in "
                f"{earlier.where}"
                + (f" as {interval_type(earlier.interval_type)}, here as {kind}" if differs else "")
                + "; the first listing is kept (an erratum can drop either row)"
            )
            continue
        first_rows[key] = row
        apex_text = row.apex.strip()
        apex = None if apex_text.lower() in _NO_APEX else whole_number(apex_text)
        if apex_text in _NOT_CODED:
            apex = None
            log.add("fixed", row.where, clip, f"apex {apex_text} means not coded; "
                    "treated as not annotated (middle frame)")  # fmt: skip
        elif apex_text.lower() not in _NO_APEX and (apex is None or not onset <= apex <= offset):
            shown = (
                f"apex {apex_text!r} is not a frame number"
                if apex is None
                else f"apex {apex} is outside onset..offset {onset}..{offset}"
            )
            log.add("fixed", row.where, clip, f"{shown}; treated as not annotated (middle frame)")
            apex = None
        intervals[video].append(
            Interval(
                onset=onset,
                apex=(onset + offset) // 2 if apex is None else apex,
                offset=offset,
                apex_annotated=apex is not None,
                interval_type=kind,
                emotion=row.emotion,
                action_units_raw=row.action_units,
                where=row.where,
            )
        )
    videos = []
    for name, folder in sorted(folders.items()):
        path = folder.path
        where = str(path.relative_to(root) if path.is_relative_to(root) else path)
        try:
            frames = frame_index.frames(folder.path)
        except UserError as error:
            log.add("skipped", where, name, str(error))
            continue
        if not frames:
            log.add("skipped", where, name, "no frame images in the video folder")
            continue
        numbers = tuple(sorted(frames))
        missing = numbers[-1] - numbers[0] + 1 - len(numbers)
        if missing:
            log.add(
                "gap",
                where,
                name,
                f"{missing} frame(s) missing between frames {numbers[0]} and {numbers[-1]}",
            )
        if not intervals[name]:
            log.add(
                "note",
                where,
                name,
                "no interval of the sheet: kept as a video without expressions (every "
                "interval spotted in it counts as a false positive)",
            )
        videos.append(
            LongVideo(
                dataset=dataset,
                subject=f"{dataset}/{folder.subject}",
                fps=fps,
                frame_numbers=numbers,
                frame_paths=tuple(frames[number] for number in numbers),
                where=where,
                video=name,
                intervals=tuple(sorted(intervals[name], key=lambda i: (i.onset, i.offset))),
            )
        )
    return VideoRelease(dataset, annotation, tuple(videos), tuple(log.notes))
