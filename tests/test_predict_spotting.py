"""Spotting one's own video with a spotting workdir (`--mode predict`), and its faults:
a face that leaves and returns, a missing frame rate, a truncated file, no face at all,
a failure mid-way; intervals recognised with a recognition workdir."""

import csv
import json
import struct
from pathlib import Path

import pytest

import data_builders
from mer_jax import predict
from mer_jax.errors import UserError
from mer_jax.predict import spotting
from mer_jax.synthetic.demo import write_recording_video
from tests import fixtures

# The tiny synthetic_lv build of test_spotting: two subjects, 32 px crops, a 4 x 4 grid.
LV_TINY = {"num_subjects": 2, "clips_per_subject": 1, "frame_size": 64, "crop_size": 32,
           "grid": 4}
synthetic_data_dir = fixtures.synthetic_data_dir


@pytest.fixture(scope="module")
def lv_data_dir(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("synthetic_lv_data")
    data_builders.build("synthetic_lv", data_dir=data_dir, overrides=LV_TINY, workers=1)
    return data_dir


@pytest.fixture(scope="module")
def baseline(lv_data_dir, tmp_path_factory) -> Path:
    config = fixtures.tiny_config(lv_data_dir, {"data.overrides": LV_TINY}, "spotting_baseline")
    workdir = tmp_path_factory.mktemp("runs") / "baseline"
    fixtures.make_run(config, workdir).train()
    return workdir


@pytest.fixture(scope="module")
def recognizer(synthetic_data_dir, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("runs") / "ststnet"
    fixtures.make_run(fixtures.tiny_config(synthetic_data_dir), workdir).train()
    return workdir


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """4 s of a new person at 200 fps; the face is gone from 1.5 s to 2.5 s."""
    path = tmp_path_factory.mktemp("videos") / "person.avi"
    return write_recording_video(path, 4.0, faceless=[(1.5, 2.5)])


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / spotting.INTERVALS_CSV).open() as handle:
        return list(csv.DictReader(handle))


def test_a_face_that_leaves_and_returns_gives_intervals_around_the_gap(baseline, video):
    found, folder = spotting.spot_video(baseline, video)
    assert folder == baseline / "predictions_new" / "person"
    assert sorted(p.name for p in folder.iterdir()) == ["intervals.csv", "notes.txt",
                                                         "timeline.png"]
    assert (folder / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    notes = (folder / "notes.txt").read_text().splitlines()
    assert len(notes) == 1 and notes[0].startswith("face lost at frame")
    lost, back = (int(x) for x in notes[0].replace(",", "").split() if x.isdigit())
    rows = _rows(folder)
    assert rows and len(rows) == len(found.intervals)
    assert list(rows[0]) == ["onset", "apex", "offset", "type", "score"]
    for row in rows:
        onset, apex, offset = int(row["onset"]), int(row["apex"]), int(row["offset"])
        assert onset <= apex <= offset and row["type"] in ("micro", "macro")
        assert offset < lost or onset > back  # never across the gap
    assert "note: face lost at frame" in found.table()


def test_the_learned_spotter_scores_with_its_replicas_mean(lv_data_dir, video, tmp_path):
    changes = {"data.overrides": LV_TINY, "train.steps": 2, "train.checkpoint_every": 2,
               "engine.steps_per_dispatch": 2, "seeds": (0, 1)}
    workdir = tmp_path / "learned"
    fixtures.make_run(fixtures.tiny_config(lv_data_dir, changes, "spotting"), workdir).train()
    found, folder = spotting.spot_video(workdir, video)
    ensemble = predict.Ensemble(workdir, task="spotting")
    assert len(ensemble.replicas) == 4  # 2 folds x 2 seeds
    valid = found.motion.valid
    # Each valid position's score is 1 - the replicas' mean probability of "none", on
    # the video's normalised motion as the training windows were.
    motion = spotting.normalised_motion(found.motion.motion, valid)
    windows = spotting.motion_windows(motion, 8)[valid]
    expected = 1.0 - ensemble.predict({"motion": windows})["probabilities"][:, 0]
    assert found.scores[valid] == pytest.approx(expected, abs=1e-6)
    assert not found.scores[~valid].any()
    assert (folder / "intervals.csv").is_file()
    # A learned spotter of before normalised motion is refused in one line.
    config = json.loads((workdir / "config.json").read_text())
    del config["spotting"]["micro_length_s"]
    (workdir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="train it again"):
        spotting.spot_video(workdir, video, output=tmp_path / "old")
    assert not (tmp_path / "old").exists()


def test_the_intervals_are_recognised_with_their_spread(baseline, recognizer, video, tmp_path):
    out = tmp_path / "recognised"
    text = predict.use_workdir(
        "predict", str(baseline), input_path=str(video), output=str(out),
        recognizer=str(recognizer),
    )
    assert f"written to {out}" in text
    rows = _rows(out)
    names = predict.Ensemble(recognizer).build.class_names
    assert list(rows[0]) == ["onset", "apex", "offset", "type", "score", "pred_class",
                             *(f"p_{n}" for n in names), *(f"spread_{n}" for n in names)]
    for row in rows:
        assert row["pred_class"] in names
        assert sum(float(row[f"p_{n}"]) for n in names) == pytest.approx(1.0, abs=1e-4)
    assert any(float(row[f"spread_{n}"]) > 0 for row in rows for n in names)


def _with_frame_rate(video: Path, path: Path, rate: int) -> Path:
    """A copy of an MJPEG AVI whose headers claim `rate` frames per second."""
    data = bytearray(video.read_bytes())
    stream, main = data.find(b"strh"), data.find(b"avih")
    data[stream + 28 : stream + 36] = struct.pack("<II", 1, rate)  # dwScale, dwRate
    data[main + 8 : main + 12] = struct.pack("<I", max(1, 1_000_000 // rate))
    path.write_bytes(bytes(data))
    return path


def test_a_nonsense_frame_rate_asks_for_fps(baseline, video, tmp_path):
    odd = _with_frame_rate(video, tmp_path / "odd.avi", 1_000_000)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="no usable frame rate.*--fps") as error:
        spotting.spot_video(baseline, odd, output=out)
    assert "\n" not in str(error.value) and not out.exists()
    found, _ = spotting.spot_video(baseline, odd, output=out, fps=200)
    assert found.fps == 200 and found.intervals
    with pytest.raises(UserError, match="--fps 0.0 is not a frame rate"):
        spotting.spot_video(baseline, odd, output=out, fps=0.0)


def test_a_truncated_file_is_spotted_up_to_where_it_ends(baseline, video, tmp_path):
    cut = tmp_path / "cut.avi"
    data = video.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    found, folder = spotting.spot_video(baseline, cut)
    note = (folder / "notes.txt").read_text().splitlines()[-1]
    assert note.startswith("the file ended early:") and "of the 800" in note
    assert all(int(row["offset"]) < 800 // 3 + 100 for row in _rows(folder))
    cut.write_bytes(data[:300])
    with pytest.raises(UserError, match="cannot"):
        spotting.spot_video(baseline, cut, output=tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_a_video_without_a_face_is_one_line_and_writes_nothing(baseline, tmp_path):
    empty = write_recording_video(tmp_path / "room.avi", 1.0, faceless=[(0.0, 1.0)])
    with pytest.raises(UserError, match="no face found in any of the 25 sampled frames"):
        spotting.spot_video(baseline, empty, output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_failure_mid_way_leaves_nothing_half_written(baseline, video, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spotting, "plot_spotting_timeline", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space left"):
        spotting.spot_video(baseline, video, output=out)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy
    # A folder holding other files is never replaced.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(UserError, match="holds other files"):
        spotting.spot_video(baseline, video, output=tmp_path / "mine")


def test_flags_the_workdir_does_not_read_are_one_line(baseline, recognizer, video):
    with pytest.raises(UserError, match="spotting workdir: it finds the onset.*--onset"):
        predict.use_workdir("predict", str(baseline), input_path=str(video), onset=3)
    with pytest.raises(UserError, match="--fps is for a spotting workdir"):
        predict.use_workdir("predict", str(recognizer), input_path=str(video), fps=30.0)
    with pytest.raises(UserError, match="--recognizer is for a spotting workdir"):
        predict.use_workdir("predict", str(recognizer), input_path=str(video),
                            recognizer=str(baseline))


def test_launch_spots_a_video(baseline, video, tmp_path):
    out = tmp_path / "launched"
    done = fixtures.launch("--workdir", str(baseline), "--mode", "predict", "--input",
                           str(video), "--output", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "interval(s) spotted in" in done.stdout and "note: face lost" in done.stdout
    assert (out / "intervals.csv").is_file()
