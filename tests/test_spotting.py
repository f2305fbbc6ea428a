"""Spotting on long videos: loading, motion scores, windows, scores to intervals, and
both spotting configs end to end through launch.py on a tiny synthetic_lv build."""

import csv
import json

import numpy as np
import pytest

import data_builders
import launch
from mer_jax.data.dataset import Video, VideoCorpus
from mer_jax.data.spotting import (
    motion_windows,
    position_labels,
    positions,
    window_dataset,
)
from mer_jax.errors import UserError
from mer_jax.evaluate.spotting import (
    Interval,
    Spotted,
    micro_max_frames,
    smooth,
    spot,
    spot_by_type,
    spotting_report,
)
from mer_jax.preprocess.long_video import motion_score, normalised_motion
from mer_jax.synthetic.recordings import all_recordings
from mer_jax.train import validation
from tests import fixtures

# Two subjects (two LOSO folds), 64 px frames, a 4 x 4 grid: built in seconds.
LV_TINY = {
    "num_subjects": 2,
    "clips_per_subject": 1,
    "frame_size": 64,
    "crop_size": 32,
    "grid": 4,
}


@pytest.fixture(scope="module")
def lv_data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("synthetic_lv_data")
    data_builders.build("synthetic_lv", data_dir=data_dir, overrides=LV_TINY, workers=1)
    return data_dir


def _video(motion, onset=(), offset=(), kinds=(), step=16, valid=None):
    count = len(motion) + 2
    return Video(
        name="rec",
        subject="db/sub01",
        frame_numbers=np.arange(1, 1 + step * count, step, dtype=np.int32),
        motion=np.asarray(motion, np.float16),
        valid=np.ones(len(motion), bool) if valid is None else np.asarray(valid),
        onset=np.array(onset, np.int32),
        apex=np.array(onset, np.int32),
        offset=np.array(offset, np.int32),
        interval_type=np.array(kinds, str),
        emotion=np.array(["x"] * len(kinds), str),
        action_units=np.array(["1"] * len(kinds), str),
    )


def _recordings(data_dir):
    """The generator's plan of the tiny build: its ground truth."""
    builder = data_builders.get_builder("synthetic_lv", data_dir=data_dir, overrides=LV_TINY)
    return all_recordings(builder.builder_config.spec())


def test_spot_turns_each_run_above_the_threshold_into_one_interval():
    scores = np.zeros(20)
    scores[3:6] = [1.0, 3.0, 1.0]
    scores[12:14] = [2.0, 2.5]
    at = np.arange(20) * 10 + 5
    found = spot(scores, at, smooth_width=1, relative_threshold=0.1)
    # mean 0.475, max 3: threshold 0.73; runs 3..5 (apex 4) and 12..13 (apex 13)
    assert found == [Spotted(35, 45, 55, 3.0), Spotted(125, 135, 135, 2.5)]
    # A higher p keeps only the strongest run, cut to what exceeds it.
    assert spot(scores, at, smooth_width=1, relative_threshold=0.9) == [Spotted(45, 45, 45, 3.0)]
    # A floor above every score: nothing is spotted, even at the video's own maximum.
    assert spot(scores / 10, at, smooth_width=1, relative_threshold=0.0, min_score=0.5) == []
    assert spot(np.zeros(0), np.zeros(0), smooth_width=3, relative_threshold=0.1) == []


def test_a_position_without_a_face_scores_nothing_and_ends_every_interval():
    scores = np.zeros(20)
    scores[3:8] = 3.0
    scores[15] = 50.0  # a gap's motion: never read
    valid = np.ones(20, bool)
    valid[5] = valid[15] = False
    at = np.arange(20) * 10 + 5
    found = spot(scores, at, smooth_width=1, relative_threshold=0.1, valid=valid)
    # The run 3..7 is cut in two at the gap; the gap's own score is not its maximum.
    assert found == [Spotted(35, 35, 45, 3.0), Spotted(65, 65, 75, 3.0)]
    # Smoothing averages over the valid neighbours only.
    smoothed = spot(scores, at, smooth_width=3, relative_threshold=0.5, valid=valid)
    assert all(not (s.onset <= 155 <= s.offset) and not (s.onset <= 55 <= s.offset)
               for s in smoothed) and smoothed
    assert spot(scores, at, smooth_width=3, relative_threshold=0.1, valid=np.zeros(20, bool)) == []


def test_smoothing_averages_over_the_positions_that_exist():
    np.testing.assert_allclose(smooth(np.array([3.0, 0.0, 0.0, 6.0]), 3), [1.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(smooth(np.array([1.0, 2.0]), 1), [1.0, 2.0])


def test_micro_max_frames_is_half_a_second():
    assert micro_max_frames(200) == 100 and micro_max_frames(30) == 15


def test_motion_score_ignores_head_motion_and_the_eyes():
    motion = np.zeros((3, 8, 8, 2), np.float32)
    motion[0] += 2.0  # the whole face moves alike: the head
    motion[1, 3, :, 1] = 5.0  # the eyes' row (eye line at 0.4 of the crop): a blink
    motion[2, 6, 2:6, 0] = 1.0  # the mouth's cells
    scores = motion_score(motion)
    np.testing.assert_allclose(scores[:2], 0.0)
    np.testing.assert_allclose(scores[2], 4.0 / 56.0, rtol=1e-6)


def test_normalised_motion_removes_the_head_and_scales_each_cell_to_its_video():
    rng = np.random.default_rng(0)
    motion = rng.normal(0.0, 0.05, (40, 4, 4, 2)).astype(np.float32)  # a still face
    motion[:, 0] *= 10.0  # a border row that always moves ten times more
    motion[20, 2, 2, 1] += 1.0  # one cell moves once
    motion += np.array([3.0, -1.0])  # the head moves the whole face alike
    valid = np.ones(40, bool)
    valid[5] = False
    found = normalised_motion(motion, valid)
    assert found.dtype == np.float32 and found.shape == motion.shape
    assert not found[5].any()  # no face: no motion
    # Every cell moves about once its typical motion, the border as the middle...
    typical = np.median(np.linalg.norm(found[valid], axis=-1), axis=0)
    np.testing.assert_allclose(typical, 1.0, rtol=1e-5)
    # ...and the one movement stands out ten times above it.
    assert np.linalg.norm(found[20, 2, 2]) > 8.0
    assert normalised_motion(motion, np.zeros(40, bool)).max() == 0.0


def test_a_fixed_length_interval_is_centred_on_the_apex():
    scores = np.zeros(20)
    scores[[6, 7]] = [0.8, 0.9]
    at = np.arange(20) * 8 + 16  # positions 8 frames apart
    (run,) = spot(scores, at, smooth_width=1, relative_threshold=0.0, min_score=0.5)
    assert (run.onset, run.apex, run.offset) == (64, 72, 72)  # one step: too short
    (fixed,) = spot(scores, at, smooth_width=1, relative_threshold=0.0, min_score=0.5,
                    length=61)
    assert (fixed.onset, fixed.apex, fixed.offset) == (42, 72, 102) and fixed.score == 0.9
    # Near the video's end the interval is cut to its last frame, never past it.
    (cut,) = spot(scores, at, smooth_width=1, relative_threshold=0.0, min_score=0.5,
                  length=61, frames=(50, 90))
    assert (cut.onset, cut.apex, cut.offset) == (50, 72, 90)


def test_spot_by_type_takes_long_runs_as_macro_and_micro_from_its_own_score():
    at = np.arange(60) * 8 + 16
    expression, micro = np.zeros(60), np.zeros(60)
    expression[5:25] = 0.9  # 160 frames: a macro-expression
    expression[40:43] = 0.9  # 24 frames: some expression, short...
    micro[40:43] = [0.6, 0.8, 0.6]  # ...and the network says micro
    expression[50:52] = micro[50:52] = 0.2  # below the floor: nothing
    found = spot_by_type(expression, micro, at, micro_max_frames=100, micro_frames=61,
                         smooth_width=1, relative_threshold=0.0, min_score=0.5)
    assert [(s.onset, s.apex, s.offset) for s in found] == [(56, 56, 208), (314, 344, 374)]


def test_windows_and_labels_of_a_video():
    motion = np.arange(6, dtype=np.float16)[:, None, None, None] * np.ones((1, 2, 2, 2))
    video = _video(motion, onset=[40], offset=[70], kinds=["micro"])
    # Flows span 32 frames: position i is frame 1 + 16 i + 16.
    np.testing.assert_array_equal(positions(video, 32), [17, 33, 49, 65, 81, 97])
    np.testing.assert_array_equal(position_labels(video, 32), [0, 0, 1, 1, 0, 0])
    windows = motion_windows(video.motion, 1)
    assert windows.shape == (6, 3, 2, 2, 2) and windows.dtype == np.float16
    np.testing.assert_array_equal(windows[0, :, 0, 0, 0], [0, 0, 1])  # zeros before the start
    np.testing.assert_array_equal(windows[5, :, 0, 0, 0], [4, 5, 0])
    corpus = VideoCorpus("db", (video,), {"fps": 200, "span": 2, "step_frames": 16, "grid": 2})
    dataset = window_dataset(corpus, 1)
    assert dataset.class_names == ("none", "micro", "macro")
    assert dataset.metadata["window"] == 3 and dataset.num_samples == 6
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1, 1, 0, 0])
    assert list(dataset["subject"]) == ["db/sub01"] * 6
    # A position without a face is neither trained on nor scored.
    gap = _video(motion, onset=[40], offset=[70], kinds=["micro"], valid=[1, 1, 0, 1, 1, 1])
    dataset = window_dataset(VideoCorpus("db", (gap,), corpus.metadata), 1)
    np.testing.assert_array_equal(dataset["position"], [17, 33, 65, 81, 97])
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1, 0, 0])
    assert dataset["sample_id"][2] == "rec/0000003"


def test_load_returns_every_recording_with_its_intervals(lv_data_dir):
    config = fixtures.tiny_config(
        lv_data_dir, {"data.overrides": LV_TINY}, base="spotting_baseline"
    )
    corpus = data_builders.load(config.data)
    assert isinstance(corpus, VideoCorpus)
    recordings = _recordings(lv_data_dir)
    assert [v.name for v in corpus.videos] == sorted(r.name for r in recordings)
    assert corpus.fps == 200 and corpus.flow_frames() == 32
    assert corpus.subjects == ("synthetic_lv/sub01", "synthetic_lv/sub02")
    by_name = {r.name: r for r in recordings}
    for video in corpus.videos:
        recording = by_name[video.name]
        assert video.motion.shape == (len(video.frame_numbers) - 4, 4, 4, 2)
        assert video.frame_numbers.dtype == np.int32 and video.motion.dtype == np.float16
        np.testing.assert_array_equal(video.offset, [e.offset for e in recording.expressions])
        assert list(video.interval_type) == [e.kind for e in recording.expressions]
        assert video.subject == f"synthetic_lv/sub{recording.subject:02d}"




def _check_outputs(workdir, data_dir):
    metrics = json.loads((workdir / "metrics.json").read_text())
    spotting = metrics["spotting"]
    for kind in ("micro", "macro", "overall"):
        assert set(spotting[kind]) == {"tp", "fp", "fn", "precision", "recall", "f1", "f1_ci"}
        low, high = spotting[kind]["f1_ci"]
        assert 0.0 <= low <= high <= 1.0
    overall = spotting["overall"]
    assert overall["tp"] + overall["fn"] == sum(len(r.expressions) for r in _recordings(data_dir))
    assert set(spotting["subjects"]) == {"synthetic_lv/sub01", "synthetic_lv/sub02"}
    assert sum(s["overall"]["fp"] for s in spotting["subjects"].values()) == overall["fp"]
    with open(workdir / "spotted_intervals.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == overall["tp"] + overall["fp"]
    for row in rows:
        assert int(row["onset"]) <= int(row["apex"]) <= int(row["offset"])
    return metrics


def test_the_baseline_end_to_end(lv_data_dir, tmp_path):
    config = fixtures.write_config_file(
        tmp_path / "baseline.py", lv_data_dir, {"data.overrides": LV_TINY}, "spotting_baseline"
    )
    workdir = tmp_path / "baseline"
    done = fixtures.launch("--config", str(config), "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr
    assert "spotting overall F1" in done.stdout
    _check_outputs(workdir, lv_data_dir)


def test_the_learned_spotter_two_steps_end_to_end(lv_data_dir, tmp_path):
    changes = {
        "data.overrides": LV_TINY,
        "train.steps": 2,
        "train.checkpoint_every": 2,
        "engine.steps_per_dispatch": 2,
    }
    config = fixtures.write_config_file(tmp_path / "learned.py", lv_data_dir, changes, "spotting")
    workdir = tmp_path / "learned"
    done = fixtures.launch("--config", str(config), "--workdir", str(workdir))
    assert done.returncode == 0, done.stderr
    assert "spotting overall F1" in done.stdout
    metrics = _check_outputs(workdir, lv_data_dir)
    assert metrics["class_names"] == ["none", "micro", "macro"] and metrics["n_folds"] == 2


def test_a_clip_dataset_is_refused_for_spotting(tmp_path):
    config = fixtures.write_config_file(
        tmp_path / "wrong.py", tmp_path, {"data.name": "synthetic_me"}, "spotting_baseline"
    )
    done = fixtures.launch("--config", str(config), "--workdir", str(tmp_path / "w"))
    assert done.returncode == 2
    assert "'clips' dataset; this task needs 'videos'" in done.stderr


def test_spotting_settings_are_validated_one_line_each():
    config = launch.parse(
        [
            "--config",
            "configs/spotting.py",
            "--config.spotting.smooth_width=4",
            "--config.spotting.relative_threshold=1.5",
        ]
    ).config
    with pytest.raises(UserError) as raised:
        validation.check_config(config)
    message = str(raised.value)
    assert "spotting.smooth_width=4: expected an odd integer >= 1" in message
    assert "spotting.relative_threshold=1.5: expected a number in [0, 1]" in message
    validation.check_config(launch.parse(["--config", "configs/spotting_baseline.py"]).config)


def test_the_report_pools_subjects_and_bounds_f1_by_a_subject_bootstrap():
    truth = [Interval(10, 40, "micro")]
    videos = {
        "a": ([Spotted(12, 20, 40, 1.0)], truth),  # a hit
        "b": ([Spotted(100, 110, 130, 1.0)], truth),  # a false positive and a miss
        "c": ([], []),  # no expression, nothing spotted
    }
    subjects = {"a": "s1", "b": "s2", "c": "s2"}
    found = spotting_report(videos, subjects, micro_max_frames=100)
    assert (found["micro"]["tp"], found["micro"]["fp"], found["micro"]["fn"]) == (1, 1, 1)
    assert found["overall"]["f1"] == pytest.approx(0.5)
    assert found["subjects"]["s1"]["micro"] == {"tp": 1, "fp": 0, "fn": 0}
    assert found["subjects"]["s2"]["overall"] == {"tp": 0, "fp": 1, "fn": 1}
    # Two subjects: a resample holds s1 twice (F1 1), s2 twice (F1 0) or both (F1 0.5).
    assert found["overall"]["f1_ci"] == [0.0, 1.0]
    assert found["macro"]["f1_ci"] == [0.0, 0.0]
