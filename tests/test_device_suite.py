"""`python -m benchmarks.device_suite`: its smallest setting runs every measurement."""

import json

import fixtures
import pytest

from benchmarks import device_suite

synthetic_data_dir = fixtures.synthetic_data_dir

MEASUREMENTS = [
    ("stacked float32", "STSTNet"),
    ("nested stacked float32", "STSTNet"),
    ("end to end (engine.mode=auto)", "STSTNet"),
    ("sequential float32", "STSTNet"),
    ("stacked bfloat16", "STSTNet"),
    ("MA2MI pre-training", "MA2MI"),
    ("optical flow", "TV-L1 JAX"),
]


def test_smoke_setting_measures_every_kind(synthetic_data_dir, tmp_path):
    smoke = device_suite.SETTINGS["smoke"]
    # The smoke setting reads the tests' tiny build, built once per session.
    assert smoke.data_overrides == fixtures.OVERRIDES
    result = device_suite.run_suite(smoke, tmp_path / "out", str(synthetic_data_dir))
    rows = result["rows"]
    assert [(row["measurement"], row["method"]) for row in rows] == MEASUREMENTS
    failed = [row for row in rows if "error" in row or "skipped" in row]
    assert not failed, failed
    stacked, nested, composite, sequential, bf16, pretraining, flow = rows
    folds = fixtures.NUM_SUBJECTS
    for row in (stacked, bf16):
        assert row["mode"] == "stacked" and row["replicas"] == row["of_replicas"] == folds
        assert row["devices"] == 8 and row["train_samples_per_s"] > 0
        assert row["wall_s"] >= row["compile_s"] > 0
    assert (stacked["compute_dtype"], bf16["compute_dtype"]) == ("float32", "bfloat16")
    # 4 outer folds x 3 inner folds x 2 learning rates, then the 4 outer runs.
    assert nested["mode"] == "stacked" and nested["replicas"] == nested["of_replicas"] == 28
    assert "24 inner + 4 outer replicas" in nested["note"]
    # One replica trained, the wall time extrapolated to all four.
    assert (sequential["replicas"], sequential["of_replicas"]) == (1, folds)
    extra = 3 * sequential["train_s"]  # the 3 replicas not trained, at the trained one's pace
    assert sequential["wall_s"] == pytest.approx(sequential["measured_wall_s"] + extra, abs=0.02)
    assert "extrapolated from 1 of 4 replicas" in sequential["note"]
    # The MEGC 2019-shaped set (the smoke setting's small variant), in auto's layout.
    assert composite["mode"] == "sequential"  # auto on a CPU
    assert composite["note"].startswith("6 samples, 3 subjects, 3 classes")
    assert pretraining["frames_per_s"] > 0 and pretraining["devices"] == 1
    # Two face pairs at 32 px, in one batch, OpenCV's figures beside.
    assert flow["pairs_per_s"] > 0 and flow["opencv_pairs_per_s"] > 0
    assert 0 < flow["epe"] < 1 and 0 < flow["opencv_epe"] < 1
    assert flow["note"].startswith("2 pairs at 32 px")

    table = (tmp_path / "out" / "results.md").read_text()
    assert "| measurement | method |" in table and table.count("\n| ") == 1 + len(rows)
    assert "extrapolated from 1 of 4" in table and "frames/s" in table and "pairs/s" in table
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written == json.loads(json.dumps(result))


def test_a_spent_budget_skips_what_is_left(tmp_path, capsys):
    out = tmp_path / "out"
    code = device_suite.main(["--setting=smoke", "--budget_s=1e-9", f"--out={out}"])
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert [row["skipped"] for row in result["rows"]] == ["the 0 s budget was spent"] * 7
    assert "the 0 s budget was spent" in capsys.readouterr().out

