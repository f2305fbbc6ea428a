"""Label protocols and action unit parsing (mer_jax.data)."""

from collections import Counter

import fake_releases
import pytest

from data_builders.casme2 import read_casme2_release
from data_builders.samm import read_samm
from data_builders.smic import read_smic
from data_builders.summary import release_summary
from mer_jax.data.protocols import get_protocol, protocols_covering
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


def tiny_clip(clip_dir, name: str) -> None:
    fake_releases.write_clip(clip_dir, [1, 2], name, size=8)


def summary_counts(release, default_protocol: str) -> dict[str, dict[str, int]]:
    summary = release_summary(
        release, name="x", config="x", manual_dir="x", default_protocol=default_protocol
    )
    return {name: info["counts"] for name, info in summary["protocols"].items()}


def test_annotation_tables_with_the_published_counts(tmp_path):
    """Coding sheets (and SMIC folders) with the emotion counts of docs/datasets.md, read
    by the real readers, give the protocol counts of docs/datasets.md."""
    casme2_rows = [
        [1 + i % 26, f"EP{i:03d}", 1, 1, 2, None, "4", emotion]
        for i, emotion in enumerate(e for e, n in CASME2_EMOTIONS.items() for _ in range(n))
    ]
    fake_releases.write_sheet(
        tmp_path / "casme2/CASME2-coding-1.xlsx", fake_releases.CASME2_HEADER, casme2_rows
    )
    for row in casme2_rows:
        tiny_clip(tmp_path / f"casme2/CASME2_RAW_selected/sub{row[0]:02d}/{row[1]}", "img{}.jpg")
    samm_rows = [
        [6 + i % 29, f"{6 + i % 29:03d}_{i}", 1, 1, 1, 2, 2, "Micro", "4", emotion, 1, ""]
        for i, emotion in enumerate(e for e, n in SAMM_EMOTIONS.items() for _ in range(n))
    ]
    fake_releases.write_sheet(
        tmp_path / "samm/SAMM_Micro_FACS_Codes_v2.xlsx", fake_releases.SAMM_HEADER, samm_rows
    )
    for row in samm_rows:
        tiny_clip(tmp_path / f"samm/SAMM/{row[0]:03d}/{row[1]}", "x_{:04d}.jpg")
    codes = {"negative": "ne", "positive": "po", "surprise": "sur"}
    for emotion, count in SMIC_EMOTIONS.items():
        for i in range(count):
            clip = f"s{1 + i % 16}_{codes[emotion]}_{i:02d}"
            tiny_clip(tmp_path / f"smic/HS/s{1 + i % 16}/micro/{emotion}/{clip}", "i{:06d}.bmp")

    casme2 = summary_counts(read_casme2_release(tmp_path / "casme2"), "casme2_5class")
    assert casme2["casme2_5class"] == {
        "happiness": 32,
        "disgust": 63,
        "repression": 27,
        "surprise": 25,
        "others": 99,
        "excluded": 9,
    }
    assert list(casme2["megc2019_3class"].values()) == [90, 32, 25, 108]
    samm = summary_counts(read_samm(tmp_path / "samm"), "samm_5class")
    assert list(samm["samm_5class"].values()) == [57, 12, 26, 15, 26, 23]
    assert list(samm["megc2019_3class"].values()) == [92, 26, 15, 26]
    smic = summary_counts(read_smic(tmp_path / "smic"), "smic_3class")
    assert list(smic["smic_3class"].values()) == list(smic["megc2019_3class"].values())
    assert list(smic["smic_3class"].values()) == [70, 51, 43, 0]


def test_casme3_and_mmew_protocols_accept_both_spellings():
    four = get_protocol("casme3_4class")
    assert [
        four.label_of("casme3", e) for e in ("anger", "sad", "happy", "surprise", "others")
    ] == [
        0,
        0,
        1,
        2,
        3,
    ]
    seven = get_protocol("mmew_7class")
    assert seven.label_of("mmew", "Sadness") == seven.label_of("mmew", "sad") == 4
    assert get_protocol("mmew_4class").label_of("mmew", "fear") == 0
    assert [p.name for p in protocols_covering("smic")] == ["megc2019_3class", "smic_3class"]
    assert [p.name for p in protocols_covering("casme3")] == ["casme3_4class", "casme3_7class"]


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
    with pytest.raises(UserError, match="known protocols: casme2_5class, casme3_4class"):
        get_protocol("casme2_7class")
