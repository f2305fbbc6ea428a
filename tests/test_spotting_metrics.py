"""Spotting scores on hand-made intervals, each case worked out on paper."""

import pytest

from mer_jax.evaluate import spotting
from mer_jax.evaluate.spotting import Interval

MICRO_MAX = 15  # frames: 0.5 s at 30 fps


def test_iou_of_inclusive_frame_ranges():
    assert spotting.iou(Interval(1, 10), Interval(1, 10)) == 1.0
    assert spotting.iou(Interval(1, 10), Interval(6, 15)) == 5 / 15
    assert spotting.iou(Interval(1, 4), Interval(5, 8)) == 0.0
    assert spotting.iou(Interval(1, 4), Interval(4, 4)) == 1 / 4
    with pytest.raises(ValueError, match="after its offset"):
        Interval(5, 4)


def test_a_match_needs_half_of_the_union():
    truth = [Interval(10, 19, "micro")]  # 10 frames
    exactly_half = Interval(10, 14)  # 5 / 10
    just_under = Interval(11, 20)  # 9 / 11 >= .5
    short = Interval(10, 13)  # 4 / 10
    scores = spotting.spotting_scores({"v": ([short], truth)}, MICRO_MAX)
    assert (scores["micro"]["tp"], scores["micro"]["fp"], scores["micro"]["fn"]) == (0, 1, 1)
    for hit in (exactly_half, just_under):
        scores = spotting.spotting_scores({"v": ([hit], truth)}, MICRO_MAX)
        assert scores["micro"]["tp"] == 1 and scores["overall"]["f1"] == 1.0


def test_one_prediction_finds_one_ground_truth_only():
    # X = 1..4 overlaps both halves by IoU 0.5 exactly: one hit, one miss.
    truth = [Interval(1, 2, "micro"), Interval(3, 4, "micro")]
    scores = spotting.spotting_scores({"v": ([Interval(1, 4)], truth)}, MICRO_MAX)
    assert (scores["micro"]["tp"], scores["micro"]["fp"], scores["micro"]["fn"]) == (1, 0, 1)
    # Two predictions on one ground truth: one hit and one false positive.
    scores = spotting.spotting_scores(
        {"v": ([Interval(1, 10), Interval(2, 10)], [Interval(1, 10, "micro")])}, MICRO_MAX
    )
    assert (scores["micro"]["tp"], scores["micro"]["fp"], scores["micro"]["fn"]) == (1, 1, 0)


def test_the_largest_matching_whatever_the_order():
    # Prediction A matches both ground truths, B only the first: a greedy pass that gives
    # A the first would find one hit; the largest matching finds two.
    truth = [Interval(1, 4, "micro"), Interval(3, 6, "micro")]
    a, b = Interval(2, 5), Interval(1, 3)
    assert spotting.iou(a, truth[0]) >= 0.5 and spotting.iou(a, truth[1]) >= 0.5
    assert spotting.iou(b, truth[0]) >= 0.5 and spotting.iou(b, truth[1]) < 0.5
    for order in ([a, b], [b, a]):
        assert spotting.spotting_scores({"v": (order, truth)}, MICRO_MAX)["micro"]["tp"] == 2


def test_counts_pool_over_videos_with_and_without_expressions():
    videos = {
        "with": ([Interval(10, 19), Interval(100, 139)], [
            Interval(10, 19, "micro"),
            Interval(100, 140, "macro"),
            Interval(300, 340, "macro"),
        ]),
        "neutral": ([Interval(5, 12), Interval(50, 90)], []),
    }
    scores = spotting.spotting_scores(videos, MICRO_MAX)
    assert {k: scores["micro"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 1, "fn": 0}
    assert {k: scores["macro"][k] for k in ("tp", "fp", "fn")} == {"tp": 1, "fp": 1, "fn": 1}
    overall = scores["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (2, 2, 1)
    assert overall["precision"] == 0.5 and overall["recall"] == 2 / 3
    assert overall["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    # Leaving the neutral video out would hide two false positives.
    assert spotting.spotting_scores({"with": videos["with"]}, MICRO_MAX)["overall"]["fp"] == 0


def test_a_prediction_is_typed_by_its_length():
    truth = [Interval(1, 40, "macro")]
    # A 40-frame prediction is macro and finds the macro ground truth; typed micro (if
    # the threshold were longer), it could not.
    assert spotting.spotting_scores({"v": ([Interval(1, 40)], truth)}, 15)["macro"]["tp"] == 1
    assert spotting.spotting_scores({"v": ([Interval(1, 40)], truth)}, 60)["macro"]["tp"] == 0
    with pytest.raises(ValueError, match="kinds"):
        spotting.spotting_scores({"v": ([], [Interval(1, 2, "blink")])}, 15)


def test_nothing_found_scores_zero_not_nan():
    scores = spotting.spotting_scores({"v": ([], [Interval(1, 9, "micro")])}, MICRO_MAX)
    zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert scores["micro"] == {"tp": 0, "fp": 0, "fn": 1, **zero}


def test_strs_is_spotting_f1_times_the_recognition_f1_of_the_truly_spotted():
    result = spotting.strs(0.5, [0, 1, 1, 2], [0, 1, 0, 2], classes=3)
    # Per class F1: 2/3 (one false 0), 2/3 (one missed 1), 1 -> mean 7/9.
    assert result["analysis_f1"] == pytest.approx(7 / 9)
    assert result["strs"] == pytest.approx(0.5 * 7 / 9)
    assert spotting.strs(0.4, [], [], classes=3)["strs"] == 0.0
