"""Known annotation errors of the MER databases, fixed in code or in a user's CSV, and logged.

Each `Erratum` names one cell of a coding sheet by its clip (subject and filename as
the reader normalises them, and the onset where a video holds several clips), the value
the sheet holds and the value it should hold. It is applied only when the sheet still
holds the wrong value, so a corrected release is left alone, and every application is
reported (in the dry-run summary under "fixed", the build log and the built dataset's
metadata); an entry that matches no row is reported too.

Two sources: the shipped per-database table `ERRATA`, and a user's own CSV
(`read_errata`, `--errata FILE` of `python -m data_builders.cli`, `data.errata` in
configs) with the columns of `Erratum`:

    dataset,subject,filename,onset,field,wrong,fixed,reason
    casme2,sub03,EP13_01,,offset,25,35,"offset typed as 25 (our video shows 35)"
    samm,006,006_1_2,,row,,,"face covered by a hand"

`dataset` may be left empty for a single-database build and names the part for the
MEGC 2019 composite; `onset` is needed only where filenames repeat (CAS(ME)^3); `wrong`
and `fixed` are cell texts ("" for an empty cell); field "row" with `fixed` empty
drops the row.

Policy for the shipped table: an entry goes in `ERRATA` only with the exact wrong and
right values and a source for them. Inconsistencies that follow a rule are handled by
the readers instead and reported the same way: an apex outside onset..offset (e.g. SAMM
028_4_1 and 032_3_1 as circulated) becomes "not annotated" with the middle-frame
fallback, and rows whose frames are missing are skipped with their reason. No erratum
with verified values is known to us yet, so the shipped tables are empty.
"""

import csv
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path

from mer_jax.errors import UserError

# Fields an erratum may correct: the parsed annotation fields of `reading.SheetRow`.
# "row" with fixed=None drops the row (e.g. an official list of unusable clips).
ERRATUM_FIELDS = ("onset", "apex", "offset", "emotion", "action_units", "interval_type", "row")
# The columns of an errata CSV; `dataset` and `onset` may be absent.
ERRATA_COLUMNS = ("dataset", "subject", "filename", "onset", "field", "wrong", "fixed", "reason")
_OPTIONAL_COLUMNS = ("dataset", "onset")


@dataclass(frozen=True)
class Erratum:
    """One known error of a coding sheet.

    Attributes:
        subject: the subject folder, without namespace ("sub01", "006", "s01", "spNO.1").
        filename: the Filename cell.
        field: one of `ERRATUM_FIELDS`.
        wrong: the cell text the erroneous sheet holds ("" for an empty cell).
        fixed: the corrected text; None with field "row" drops the row.
        reason: why, with the source of the correction.
        onset: the Onset cell text, for databases whose filenames repeat (CAS(ME)^3).
        dataset: the database it is about; None: the one being read.
        source: where the entry comes from (a CSV file and line), for messages.
    """

    subject: str
    filename: str
    field: str
    wrong: str
    fixed: str | None
    reason: str
    onset: str | None = None
    dataset: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        """Rejects entries that could never apply."""
        if self.field not in ERRATUM_FIELDS:
            raise ValueError(f"erratum field {self.field!r} is not one of {ERRATUM_FIELDS}")
        if (self.fixed is None) != (self.field == "row"):
            raise ValueError("fixed=None (drop the row) goes with field='row' and only with it")

    def matches(self, subject: str, filename: str, onset: str) -> bool:
        """Whether this erratum is about the clip of a sheet row (cells as text)."""
        return (
            _same(self.subject, subject)
            and _same(self.filename, filename)
            and (self.onset is None or _same(self.onset, onset))
        )

    def describe(self) -> str:
        """One line for the build log: what changed and why."""
        if self.field == "row":
            return f"row dropped: {self.reason}"
        return f"{self.field} {self.wrong!r} -> {self.fixed!r}: {self.reason}"


def _same(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


# Database name -> its errata. See the module docstring for what belongs here.
ERRATA: dict[str, tuple[Erratum, ...]] = {
    "casme2": (),
    "samm": (),
    "smic": (),
    "casme3": (),
    "mmew": (),
}


def errata_of(dataset: str, errata: Iterable[Erratum] | None = None) -> tuple[Erratum, ...]:
    """The errata a reader applies: the given ones, else the shipped table of `dataset`."""
    return tuple(ERRATA.get(dataset, ()) if errata is None else errata)


def errata_for(dataset: str, user_errata: Iterable[Erratum]) -> tuple[Erratum, ...]:
    """The shipped table of `dataset` and the user's entries about it (or about no dataset
    in particular): what a builder's reader of `dataset` applies."""
    own = (erratum for erratum in user_errata if erratum.dataset in (None, dataset))
    return ERRATA.get(dataset, ()) + tuple(own)


def validate(errata: Sequence[Erratum]) -> None:
    """Rejects two errata for the same cell, which would depend on their order.

    Raises:
        UserError: the duplicate cell is named.
    """
    seen = set()
    for erratum in errata:
        key = (erratum.subject.lower(), erratum.filename.lower(), erratum.onset, erratum.field)
        if key in seen:
            raise UserError(
                f"two errata for {erratum.subject}/{erratum.filename} field {erratum.field}; "
                "keep one"
            )
        seen.add(key)


def read_errata(path: str | Path) -> tuple[Erratum, ...]:
    """The entries of a user's errata CSV (format in the module docstring).

    Raises:
        UserError: the file is missing or unreadable, a column is missing or unknown, or
            lines are malformed; every bad line is named in one message.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read the errata file {path}: {error}") from None
    reader = csv.DictReader(text.splitlines())
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [c for c in ERRATA_COLUMNS if c not in header and c not in _OPTIONAL_COLUMNS]
    unknown = [name for name in header if name not in ERRATA_COLUMNS]
    if missing or unknown:
        raise UserError(
            f"errata file {path}: the header must hold the columns {','.join(ERRATA_COLUMNS)} "
            f"(dataset and onset may be left out); missing {missing}, unknown {unknown}"
        )
    reader.fieldnames = header
    errata, problems = [], []
    for line_number, row in enumerate(reader, start=2):
        cells = {name: (row.get(name) or "").strip() for name in ERRATA_COLUMNS}
        if not any(cells.values()):
            continue
        source = f"{path.name} line {line_number}"
        try:
            errata.append(
                Erratum(
                    subject=cells["subject"],
                    filename=cells["filename"],
                    field=cells["field"].lower(),
                    wrong=cells["wrong"],
                    fixed=None if cells["field"].lower() == "row" else cells["fixed"],
                    reason=cells["reason"],
                    onset=cells["onset"] or None,
                    dataset=cells["dataset"].lower() or None,
                    source=source,
                )
            )
        except ValueError as error:
            problems.append(f"{source}: {error}")
            continue
        if not (cells["subject"] and cells["filename"] and cells["reason"]):
            problems.append(f"{source}: subject, filename and reason must not be empty")
        elif cells["field"].lower() == "row" and cells["fixed"]:
            problems.append(f"{source}: a 'row' erratum drops the row; leave 'fixed' empty")
    if problems:
        raise UserError(f"errata file {path} has bad lines:\n  " + "\n  ".join(problems))
    return tuple(errata)


def errata_digest(errata: Sequence[Erratum]) -> str:
    """8 hex digits identifying a set of errata: a build made with them gets its own cache
    entry, so a build with other (or no) errata is never read in its place."""
    # Every field but `source`: moving an entry to another line changes nothing.
    text = "\n".join(sorted(repr(astuple(erratum)[:-1]) for erratum in errata))
    return hashlib.sha256(text.encode()).hexdigest()[:8]
