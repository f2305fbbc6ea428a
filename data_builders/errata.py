"""Known annotation errors of the MER databases, fixed in code and logged.

Each `Erratum` names one cell of a coding sheet by its clip (subject and filename as
written, and the onset where a video holds several clips), the value the sheet holds
and the value it should hold. It is applied only when the sheet still holds the wrong
value, so a corrected release is left alone, and every application is reported (in
the dry-run summary, the build log and the built dataset's metadata).

Policy: an entry goes in `ERRATA` only with the exact wrong and right values and a
source for them. Inconsistencies that follow a rule are handled by the readers instead
and reported the same way: an apex outside onset..offset (e.g. SAMM 028_4_1 and
032_3_1 as circulated) becomes "not annotated" with the middle-frame fallback, and
clips whose frames are missing are skipped with their reason. No erratum with verified
values is known to us yet, so the shipped tables are empty; `read_*` functions accept
an `errata` argument for a user's own list.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mer_jax.errors import UserError

# Fields an erratum may correct: the parsed annotation fields of `reading.SheetRow`.
# "row" with fixed=None drops the row (e.g. an official list of unusable clips).
ERRATUM_FIELDS = ("onset", "apex", "offset", "emotion", "action_units", "row")


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
    """

    subject: str
    filename: str
    field: str
    wrong: str
    fixed: str | None
    reason: str
    onset: str | None = None

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
