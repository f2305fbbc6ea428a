"""Label protocols and action unit parsing (mer_jax.data)."""

from collections import Counter

import numpy as np
import pytest

from mer_jax.data.action_units import AU_LIST, multi_hot, parse_action_units
from mer_jax.data.protocols import get_protocol
from mer_jax.errors import UserError

CASME2_EMOTIONS = {
    "others": 99,
    "disgust": 63,
    "happiness": 32,
    "repression": 27,
    "surprise": 25,
    "sadness": 7,
    "fear": 2,
}
SAMM_EMOTIONS = {
    "Anger": 57,
    "Other": 26,
    "Happiness": 26,
    "Surprise": 15,
    "Contempt": 12,
    "Disgust": 9,
    "Fear": 8,
    "Sadness": 6,
}
SMIC_EMOTIONS = {"negative": 70, "positive": 51, "surprise": 43}


def label_counts(protocol_name: str, dataset: str, emotions: dict[str, int]) -> list[int]:
    protocol = get_protocol(protocol_name)
    labels = Counter()
    for emotion, count in emotions.items():
        label = protocol.label_of(dataset, emotion)
        if label is not None:
            labels[label] += count
    return [labels[label] for label in range(protocol.num_classes)]


def test_casme2_5class_keeps_246_clips():
    assert sum(CASME2_EMOTIONS.values()) == 255
    assert label_counts("casme2_5class", "casme2", CASME2_EMOTIONS) == [32, 63, 27, 25, 99]


def test_samm_5class_keeps_136_clips():
    assert sum(SAMM_EMOTIONS.values()) == 159
    assert label_counts("samm_5class", "samm", SAMM_EMOTIONS) == [57, 12, 26, 15, 26]


def test_megc2019_3class_counts():
    assert label_counts("megc2019_3class", "casme2", CASME2_EMOTIONS) == [90, 32, 25]
    assert label_counts("megc2019_3class", "samm", SAMM_EMOTIONS) == [92, 26, 15]
    assert label_counts("megc2019_3class", "smic", SMIC_EMOTIONS) == [70, 51, 43]
    assert get_protocol("megc2019_3class").label_of("smic", "po") == 1


def test_emotion_matching_ignores_case_and_whitespace():
    protocol = get_protocol("casme2_5class")
    assert protocol.label_of("casme2", "  Happiness ") == 0
    assert protocol.label_of("casme2", "FEAR") is None
    assert protocol.label_of("synthetic_me", "Repression") == 2  # CASME II vocabulary


def test_unknown_emotion_dataset_and_protocol_are_errors():
    protocol = get_protocol("casme2_5class")
    with pytest.raises(UserError, match="'happy' is not in the casme2 vocabulary"):
        protocol.label_of("casme2", "happy")
    with pytest.raises(
        UserError, match="no label mapping for dataset 'samm'.*covers casme2, synthetic_me"
    ):
        protocol.label_of("samm", "anger")
    with pytest.raises(UserError, match="known protocols: casme2_5class, megc2019_3class"):
        get_protocol("casme2_7class")


@pytest.mark.parametrize(
    ("raw", "units", "alternatives"),
    [
        ("R4+L10", {4, 10}, False),
        ("4(k)", {4}, False),
        ("1+2+ref(5)", {1, 2, 5}, False),
        ("12，14", {12, 14}, False),
        ("4 or 7", {4, 7}, True),
        ("AU6B+12C", {6, 12}, False),
        ("T17 + B24", {17, 24}, False),
        ("", set(), False),
    ],
)
def test_parse_action_units(raw, units, alternatives):
    parsed = parse_action_units(raw)
    assert parsed.raw == raw
    assert parsed.units == units
    assert parsed.has_alternatives is alternatives


def test_unreadable_action_unit_is_quoted():
    with pytest.raises(
        ValueError, match="cannot read 'smile' in the action unit string '12\\+smile'"
    ):
        parse_action_units("12+smile")


def test_multi_hot_follows_au_list():
    vector = multi_hot({4, 12, 61})  # 61 (eyes left) is not in the AU list
    assert vector.dtype == np.uint8 and vector.shape == (len(AU_LIST),)
    assert [AU_LIST[i] for i in np.flatnonzero(vector)] == [4, 12]
