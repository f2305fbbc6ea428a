"""Action-unit cells of hand-written coding sheets (mer_jax.data.action_units).

Each rule of the module docstring is exercised with its own example; every cell that is
not read completely must come back unknown, with its problem, and never raise.
"""

import numpy as np
import pytest

from mer_jax.data.action_units import AU_LIST, multi_hot, parse_action_units


@pytest.mark.parametrize(
    ("raw", "units"),
    [
        ("4+7;43", {4, 7, 43}),
        ("L12、R14", {12, 14}),
        ("12，14", {12, 14}),  # full-width comma
        ("１２＋１４", {12, 14}),  # full-width digits and plus
        ("4 & 9", {4, 9}),
        ("AU4", {4}),
        ("R4+L10", {4, 10}),
        ("T17 + B24", {17, 24}),
        ("U14", {14}),
        ("AU R12", {12}),
        ("au 6", {6}),
        ("AU6B+12C", {6, 12}),
        ("12B-C", {12}),
        ("12B/C", {12}),
        ("12 b~c", {12}),
        ("4(k)", {4}),
        ("12(B)", {12}),
        ("12(L)", {12}),
        ("1+2+ref(5)", {1, 2, 5}),
        ("(1+2)+4", {1, 2, 4}),
        ("AU L12B-C + (1+2)", {1, 2, 12}),
        ("4+", {4}),
    ],
)
def test_unambiguous_cells_are_read(raw, units):
    parsed = parse_action_units(raw)
    assert parsed.raw == raw
    assert parsed.known and parsed.units == units and parsed.problem == ""


@pytest.mark.parametrize("raw", ["", "  ", "/", "-", "N/A", "na", "None"])
def test_cells_without_coding_are_unknown_without_a_problem(raw):
    parsed = parse_action_units(raw)
    assert not parsed.known and parsed.units == frozenset() and parsed.problem == ""


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("4?", "uncertainty mark"),
        ("?", "uncertainty mark"),
        ("4 or 7", "alternatives"),
        ("4/7", "alternatives"),
        ("(4/7)", "alternatives"),
        ("1+(4/7)", "alternatives"),
        ("4|7", "alternatives"),
        ("12B/13", "alternatives"),  # an intensity, then an alternative AU
        ("4+smile", "'smile' is no AU"),
        ("see notes", "'see notes' is no AU"),
        ("12 (weak)", "'weak' is no AU"),
        ("4 7", "'4 7' is no AU"),
        ("12-14", "'12-14' is no AU"),
        ("0", "'0' is no AU"),
        ("123", "'123' is no AU"),
        ("(1+2", "unbalanced parentheses"),
        ("1+2)", "unbalanced parentheses"),
        ("+", "no AU in it"),
        ("4+7\n(unclear)", "'unclear' is no AU"),
    ],
)
def test_ambiguous_or_unreadable_cells_are_unknown_with_their_problem(raw, problem):
    parsed = parse_action_units(raw)
    assert not parsed.known and parsed.units == frozenset()
    assert problem in parsed.problem
    assert parsed.raw == raw


def test_multi_hot_follows_au_list():
    vector = multi_hot({4, 12, 61})  # 61 (eyes left) is not in the AU list
    assert vector.dtype == np.uint8 and vector.shape == (len(AU_LIST),)
    assert [AU_LIST[i] for i in np.flatnonzero(vector)] == [4, 12]
