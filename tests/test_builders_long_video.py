"""The real long-video builders (casme_sq, samm_lv, casme3_lv) on fake releases of their
layouts: every planted problem reported once in one dry run, strict and errata, naming
rules and header-less sheets, and a real build through the one motion extractor."""

import json
import shutil
from pathlib import Path

import long_video_releases as lvr
import numpy as np
import openpyxl
import pytest

import data_builders
from data_builders import cli, loading
from data_builders.casme_sq.casme_sq_dataset_builder import naming_rules, read_casme_sq
from data_builders.reading import interval_type
from data_builders.records import ReleaseLog
from data_builders.sheets import find_annotation
from mer_jax.data.dataset import VideoCorpus
from mer_jax.errors import UserError

NAMES = list(lvr.LAYOUTS)


def _dry_run(name, root, tmp_path, *extra):
    return [name, "--manual_dir", str(root), "--dry_run", "--data_dir", str(tmp_path / "d"),
            *extra]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_dry_run_reports_every_planted_problem_once_and_strict_refuses(name, tmp_path, capsys):
    root = tmp_path / name
    release = lvr.write_release(name, root)
    summary_path = tmp_path / "summary.json"
    args = _dry_run(name, root, tmp_path, "--errata", str(release.errata))
    assert cli.main([*args, "--summary_json", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    assert lvr.summary_problems(summary) == release.problems
    assert summary["videos"] == 3 and summary["subjects"] == 2
    assert summary["videos_without_intervals"] == 1
    assert summary["intervals"] == lvr.INTERVALS == {"micro": 5, "macro": 2}
    # Apexes of 0, -1 and outside their interval are not annotated: the middle frame.
    assert summary["apex_annotated"] == len(lvr.KEPT) - 3
    printed = capsys.readouterr().out
    assert "videos: 3 (1 without intervals)   subjects: 2" in printed
    assert "intervals: micro 5, macro 2" in printed
    assert cli.main([*args, "--strict"]) == 2
    skipped = sum(count for (key, _), count in release.problems.items() if key == "skipped")
    assert f"error: {skipped} row(s) or clip(s) of {name} were skipped" in capsys.readouterr().err


@pytest.mark.parametrize("name", NAMES)
def test_without_errata_the_fraction_is_skipped_and_the_dropped_row_kept(name, tmp_path):
    root = tmp_path / name
    release = lvr.write_release(name, root)
    read = data_builders.read_release(name, root)
    fraction = release.rows[lvr.FIXED_BY_ERRATUM]
    (note,) = [n for n in read.notes if n.where == fraction]
    assert note.kind == "skipped" and "'2.5' is a fraction, not a frame number" in note.reason
    videos = {video.video: video for video in read.videos}
    assert set(videos) == set(release.layout.video_names)
    kept = videos[release.layout.video_names[1]].intervals
    assert [(i.onset, i.offset) for i in kept if i.onset == 36] == [(36, 38)]


def test_intervals_of_a_video_keep_the_sheet_and_the_apex_rules(tmp_path):
    root = tmp_path / "samm_lv"
    lvr.write_release("samm_lv", root)
    read = data_builders.read_release("samm_lv", root)
    (video,) = [video for video in read.videos if video.video == "006_1"]
    assert video.subject == "samm_lv/006" and video.fps == 200.0
    assert video.frame_numbers == tuple(range(1, lvr.NUM_FRAMES + 1))
    shown = [
        (i.onset, i.apex, i.offset, i.interval_type, i.apex_annotated) for i in video.intervals
    ]
    # 5..10 micro (its repeat as macro skipped), 12..20 macro from text cells, and
    # 22..26 whose apex 0 means not coded: the middle frame.
    assert shown == [(5, 7, 10, "micro", True), (12, 15, 20, "macro", True),
                     (22, 24, 26, "micro", False)]  # fmt: skip
    (unannotated,) = [video for video in read.videos if video.video == "007_3"]
    assert unannotated.intervals == ()
    # 5-digit frame numbers read as any other.
    (padded,) = [video for video in read.videos if video.video == "007_2"]
    assert padded.frame_paths[0].name == "007_2_00001.jpg"


def test_interval_types_as_the_workbooks_write_them():
    assert interval_type("Micro - 1/2") == interval_type("micro-expression") == "micro"
    assert interval_type("Macro") == interval_type("Macro-expression") == "macro"
    assert interval_type("blink") is None and interval_type("") is None


def test_casme_sq_naming_rules_and_a_workbook_without_them(tmp_path):
    root = tmp_path / "casme_sq"
    lvr.write_release("casme_sq", root)
    log = ReleaseLog()
    sheet = find_annotation(
        root, pattern=read_casme_sq.sheet, layout="", depth=0, log=log,
        required=read_casme_sq.required, headerless=read_casme_sq.headerless,
    )  # fmt: skip
    assert sheet.table.sheet == "Sheet1" and sheet.header.row_number == 0
    # The same sheet chosen by hand (PATH#SHEET) is read by position too.
    chosen = data_builders.ReadOptions(annotations=(Path(f"{sheet.table.path}#Sheet1"),))
    assert data_builders.read_release("casme_sq", root, reading=chosen).videos
    rules = naming_rules(sheet)
    assert rules.subjects == {1: "s15", 2: "s16"}
    # Codes kept as text: the one Excel stored as the number 401 gets its zero back.
    assert rules.codes == {"disgust1": "0101", "anger1": "0401", "happy2": "0502", "sad1": "0201"}
    workbook = openpyxl.load_workbook(sheet.table.path)
    del workbook["naming rule1"], workbook["naming rule2"]
    workbook.save(sheet.table.path)
    with pytest.raises(UserError, match="holds no naming rules"):
        data_builders.read_release("casme_sq", root)


@pytest.mark.parametrize("name", NAMES)
def test_a_release_without_frames_says_what_layout_is_expected(name, tmp_path):
    root = tmp_path / name
    release = lvr.write_release(name, root)
    shutil.rmtree(root / release.layout.videos[0].split("/")[0])
    with pytest.raises(UserError, match="expected layout"):
        data_builders.read_release(name, root)


@pytest.mark.parametrize("name", NAMES)
def test_build_stores_the_motion_of_every_video_and_its_intervals(name, tmp_path, capsys):
    root = tmp_path / name
    release = lvr.write_release(name, root, faces=True)
    data_dir = tmp_path / "data"
    args = [name, "--manual_dir", str(root), "--data_dir", str(data_dir), "--workers", "1"]
    assert cli.main([*args, "--errata", str(release.errata)]) == 0
    assert f"built {name}/default-errata_" in capsys.readouterr().out
    builder = data_builders.get_builder(
        name, data_dir=data_dir,
        reading=data_builders.ReadOptions(errata=data_builders.read_errata(release.errata)),
    )  # fmt: skip
    examples = data_builders.load_examples(builder)
    assert sorted(examples["video"]) == sorted(release.layout.video_names)
    metadata = builder.info.metadata
    step, span, grid = metadata["step_frames"], metadata["span"], metadata["grid"]
    assert step == {"samm_lv": 16}.get(name, 2)
    for index, video in enumerate(examples["video"]):
        numbers, motion = examples["frame_numbers"][index], examples["motion"][index]
        assert numbers[1] - numbers[0] == step
        assert motion.shape == (len(numbers) - span, grid, grid, 2)
        assert motion.dtype == np.float16 and np.isfinite(motion).all()
        # One face throughout: every flow is of the aligned face.
        assert examples["valid"][index].all()
        assert examples["num_frames"][index] >= lvr.NUM_FRAMES - 3  # first frames lost
        kinds = list(examples["interval_type"][index])
        if video == release.layout.video_names[2]:
            assert kinds == []
        else:
            assert len(examples["onset"][index]) == len(kinds) > 0
    total = sum(len(kinds) for kinds in examples["interval_type"])
    assert total == len(lvr.KEPT)
    # A recording's face moves right (FACE_SHIFT): the stored flow sees it.
    mean_u = np.mean([m[..., 0].astype(np.float32).mean() for m in examples["motion"]])
    assert mean_u > 0.1
    assert any(note.startswith("skipped:") for note in metadata["release_notes"])
    corpus = loading.dataset_from_build(builder)
    assert isinstance(corpus, VideoCorpus) and len(corpus.videos) == 3
    assert corpus.fps == {"samm_lv": 200.0}.get(name, 30.0)
    assert corpus.subjects == tuple(sorted({f"{name}/{s}" for s in release.layout.subjects[:3]}))


def test_recordings_without_a_face_are_named_and_nothing_is_written(tmp_path, capsys):
    root = tmp_path / "samm_lv"
    lvr.write_release("samm_lv", root)  # 8 px frames: no face anywhere
    data_dir = tmp_path / "data"
    args = ["samm_lv", "--manual_dir", str(root), "--data_dir", str(data_dir), "--workers", "1"]
    assert cli.main(args) == 2
    error = capsys.readouterr().err
    assert "samm_lv: 3 of 3 videos could not be built; nothing was written" in error
    assert error.count("no face found in any of the") == 3
    assert not list(data_dir.glob("samm_lv/*/*/dataset_info.json"))
