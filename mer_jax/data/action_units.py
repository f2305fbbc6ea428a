"""Action unit (AU) cells of the MER coding sheets, parsed to sets of AU numbers.

Coding sheets are written by hand over years, in dialects no list anticipates. The
parser reads what is unambiguous and marks everything else unknown, never guessing: the
raw cell is always kept next to the result (`ActionUnits.raw`, stored as
`action_units_raw`), and a clip whose cell is not read completely gets no AU target
(`ActionUnits.known` is False; builds store it as `action_units_known`, which AU losses
read as a mask). Parsing never raises, so no AU cell can stop a build.

Read (each rule with an example; rules combine, e.g. "AU L12B-C + (1+2)"):

- AUs joined by "+", ",", ";", "&" or "、": "4+7;43" -> 4, 7, 43; "L12、R14" -> 12, 14.
- Full-width characters of a Chinese input method are read as their ASCII forms
  (Unicode NFKC): "12，14" -> 12, 14; "１２＋１４" -> 12, 14.
- An "AU" prefix and a side prefix L, R (left, right), T, B (top, bottom) or U
  (unilateral), in either order, with or without spaces: "AU4" -> 4, "R4+L10" -> 4, 10,
  "T17 + B24" -> 17, 24, "AU R12" -> 12. The side is dropped; the AU is present.
- A FACS intensity letter A-E after the number, or a range of them: "AU6B+12C" -> 6, 12;
  "12B-C", "12B/C", "12B~C" -> 12.
- A modifier in parentheses right after an AU: "(k)", an intensity or a side:
  "4(k)" -> 4, "12(B)" -> 12, "12(L)" -> 12.
- "ref(...)": an AU the coder noted for reference, kept: "1+2+ref(5)" -> 1, 2, 5.
- Parentheses grouping AUs: "(1+2)+4" -> 1, 2, 4 (the group asserts each AU as "+" does).

Not coded (known False, nothing to report: the clip simply has no AU coding): an empty
cell, "/", "-", "n/a", "na", "none" (SMIC has no AU coding at all).

Unknown (known False, and `problem` says why; a builder reports it with the row):

- an uncertainty mark anywhere: "4?", "?";
- alternatives, the coder did not decide: "4 or 7", "4/7", "(4/7)", "4|7";
- anything else that is not an AU of the rules above: free text ("4+smile",
  "see notes"), AUs separated by spaces only ("4 7"), AU ranges ("12-14"), numbers that
  are no AU ("0", "123"), unbalanced parentheses ("(1+2").
"""

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# The AUs encoded by `multi_hot`: the upper- and lower-face AUs that recur in the
# CASME II and SAMM codings (brows 1 2 4, eyes 5 6 7 43, nose 9, mouth 10 12 14 15
# 17 20 23 24 25 26, nostrils 38 39). Rarer AUs (e.g. 16, 18, head and eye movements
# 5x/6x) are left out of the vector but stay in `action_units_raw`.
AU_LIST: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26, 38, 39, 43)

# Whole cells that mean "no AU coded".
_NOT_CODED = frozenset({"", "/", "-", "n/a", "na", "none"})
_SIDE = r"[LRTBU]"
_INTENSITY = r"[A-E](?:\s*[-/~]\s*[A-E])?"
# One AU: prefixes ("AU", a side, in either order), the number, an optional intensity.
_AU = re.compile(
    rf"(?:AU\s*{_SIDE}?|{_SIDE}?\s*(?:AU)?)\s*(\d{{1,2}})\s*(?:{_INTENSITY})?", re.IGNORECASE
)
# A modifier in parentheses right after an AU (and its intensity): "4(k)", "12B(C)".
_MODIFIER = re.compile(
    rf"(\d\s*(?:{_INTENSITY})?)\s*\(\s*(?:k|{_INTENSITY}|{_SIDE})\s*\)", re.IGNORECASE
)
_REFERENCE = re.compile(r"\bref\s*\(([^()]*)\)", re.IGNORECASE)
# An intensity range after an AU number: its "-" or "/" is no AU range or alternative.
_INTENSITY_RANGE = re.compile(r"(\d\s*[A-E])\s*[-/~]\s*[A-E](?![A-Za-z])", re.IGNORECASE)
_ALTERNATIVE = re.compile(r"\bor\b|[/|\\]", re.IGNORECASE)
_SEPARATORS = re.compile(r"[+,;&、]")


@dataclass(frozen=True)
class ActionUnits:
    """The AUs of one clip, as far as its coding-sheet cell says them unambiguously.

    Attributes:
        raw: the cell as written in the coding sheet.
        units: the AU numbers, without sides, intensities or markers; empty unless known.
        known: the cell was read completely (the clip has an AU target).
        problem: why a coded cell could not be read, e.g. "'smile' is no AU" ("" when
            known, or not coded).
    """

    raw: str
    units: frozenset[int]
    known: bool
    problem: str = ""


def parse_action_units(raw: str) -> ActionUnits:
    """Parses an AU cell of any MER coding sheet (see the module docstring for the rules).

    Never raises: a cell that cannot be read completely comes back with `known` False
    and the reason in `problem`.
    """
    text = unicodedata.normalize("NFKC", raw).strip()
    if text.lower() in _NOT_CODED:
        return ActionUnits(raw=raw, units=frozenset(), known=False)
    problem = _problem(text)
    if problem:
        return ActionUnits(raw=raw, units=frozenset(), known=False, problem=problem)
    text = _MODIFIER.sub(r"\1", _REFERENCE.sub(r"\1", text))
    text = _INTENSITY_RANGE.sub(r"\1", text)
    if _ALTERNATIVE.search(text):
        problem = "alternatives ('or', '/'): the coder did not decide"
        return ActionUnits(raw=raw, units=frozenset(), known=False, problem=problem)
    units: set[int] = set()
    # Parentheses left over group AUs: the group asserts each of them, as "+" does.
    for part in _SEPARATORS.split(text.replace("(", "+").replace(")", "+")):
        token = part.strip()
        if not token:
            continue
        match = _AU.fullmatch(token)
        if match is None or int(match.group(1)) == 0:
            return ActionUnits(
                raw=raw, units=frozenset(), known=False, problem=f"{token!r} is no AU"
            )
        units.add(int(match.group(1)))
    if not units:
        return ActionUnits(raw=raw, units=frozenset(), known=False, problem="no AU in it")
    return ActionUnits(raw=raw, units=frozenset(units), known=True)


def _problem(text: str) -> str:
    """What makes a coded cell unreadable before its AUs are looked at, or ""."""
    if "?" in text:
        return "an uncertainty mark '?'"
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    return "" if depth == 0 else "unbalanced parentheses"


def multi_hot(aus: Iterable[int], au_list: tuple[int, ...] = AU_LIST) -> np.ndarray:
    """uint8 (len(au_list),) vector with 1 where the AU is present; other AUs are ignored."""
    present = set(aus)
    return np.array([au in present for au in au_list], dtype=np.uint8)
