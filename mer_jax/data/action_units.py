"""Action unit (AU) strings of the MER databases, parsed to sets of AU numbers.

The coding sheets write AUs in several dialects: "R4+L10" (side prefixes L/R and
T/B for top/bottom), "AU6B+12C" (FACS intensity letters A-E), "4(k)", "1+2+ref(5)",
"12，14" or "12、14" (full-width separators from a Chinese input method), "4 or 7" (the
coder could not decide), "/" or "-" for "no AU coded". The raw string is always kept next
to the parsed set, so nothing the parser discards is lost.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# The AUs encoded by `multi_hot`: the upper- and lower-face AUs that recur in the
# CASME II and SAMM codings (brows 1 2 4, eyes 5 6 7 43, nose 9, mouth 10 12 14 15
# 17 20 23 24 25 26, nostrils 38 39). Rarer AUs (e.g. 16, 18, head and eye movements
# 5x/6x) are left out of the vector but stay in `action_units_raw`.
AU_LIST: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 38, 39, 43)

# One AU: optional "AU" and side prefix (L/R/T/B), the number, an optional intensity
# letter A-E and an optional "(k)" marker.
_TOKEN = re.compile(r"^(?:AU)?\s*[LRTB]?\s*(\d+)\s*[A-E]?\s*(?:\(k\))?$", re.IGNORECASE)
# "ref(...)" marks an AU the coder noted for reference; the AU inside is kept.
_REFERENCE = re.compile(r"^ref\s*\((.*)\)$", re.IGNORECASE)
_SEPARATORS = re.compile(r"[+,，、;；]|\bor\b", re.IGNORECASE)
# Whole cells that mean "no AU coded".
_NO_AUS = frozenset({"/", "-", "none", "n/a", "na"})
_ALTERNATIVE = re.compile(r"\bor\b", re.IGNORECASE)


@dataclass(frozen=True)
class ActionUnits:
    """The AUs of one clip.

    Attributes:
        raw: the string as written in the coding sheet.
        units: the AU numbers, without sides, intensities or markers.
        has_alternatives: the string holds "or" (e.g. "4 or 7"); `units` then holds
            every alternative.
    """

    raw: str
    units: frozenset[int]
    has_alternatives: bool


def parse_action_units(raw: str) -> ActionUnits:
    """Parses an AU string of any MER coding sheet.

    Raises:
        ValueError: a part of the string is not an AU; the message quotes it.
    """
    units: set[int] = set()
    if raw.strip().lower() in _NO_AUS:
        return ActionUnits(raw=raw, units=frozenset(), has_alternatives=False)
    for part in _SEPARATORS.split(raw):
        token = part.strip()
        if not token:
            continue
        reference = _REFERENCE.match(token)
        if reference:
            token = reference.group(1).strip()
        match = _TOKEN.match(token)
        if match is None:
            raise ValueError(
                f"cannot read {part.strip()!r} in the action unit string {raw!r}: expected "
                "AUs like 4, R4, L10, AU6B, 12C, 4(k) or ref(5), joined by '+' or ','"
            )
        units.add(int(match.group(1)))
    return ActionUnits(
        raw=raw, units=frozenset(units), has_alternatives=bool(_ALTERNATIVE.search(raw))
    )


def multi_hot(aus: Iterable[int], au_list: tuple[int, ...] = AU_LIST) -> np.ndarray:
    """uint8 (len(au_list),) vector with 1 where the AU is present; other AUs are ignored."""
    present = set(aus)
    return np.array([au in present for au in au_list], dtype=np.uint8)
