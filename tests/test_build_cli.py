"""`python -m data_builders.cli`: the dry-run check and the build command."""

import json
import re
import subprocess
import sys
from pathlib import Path

import fake_releases
import messy_releases
import pytest

import data_builders
from data_builders import cli, loading
from data_builders.megc2019 import COMPOSITE_LIST
from mer_jax.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def casme2_release(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "casme2"
    fake_releases.make_casme2(root)
    return root


def test_dry_run_prints_and_writes_the_summary(casme2_release, tmp_path, capsys):
    summary_path = tmp_path / "out" / "casme2.json"
    status = cli.main(
        ["casme2", "--manual_dir", str(casme2_release), "--dry_run"]
        + ["--summary_json", str(summary_path), "--data_dir", str(tmp_path / "data")]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "samples: 5   subjects: 3   apex annotated: 4" in printed
    assert (
        "protocol casme2_5class (builder default): happiness 1, disgust 1, repression 1, "
        "surprise 0, others 1, excluded 1"
    ) in printed
    assert (
        "CASME2-coding-20190701.xlsx row 8 clip sub03/EP13_01: annotated frame(s) [25]" in printed
    )
    summary = json.loads(summary_path.read_text())
    assert summary["samples"] == 5 and summary["subjects"] == 3
    assert summary["emotions"] == {
        "disgust": 1,
        "happiness": 1,
        "repression": 1,
        "others": 1,
        "fear": 1,
    }
    assert summary["protocols"]["megc2019_3class"]["counts"] == {
        "negative": 2,
        "positive": 1,
        "surprise": 0,
        "excluded": 2,
    }
    assert [len(summary[key]) for key in ("skipped", "fixed", "gaps", "notes")] == [1, 0, 1, 1]
    assert summary["action_units"] == {"known": 5, "masked": 0, "not_coded": 0}
    assert not (tmp_path / "data").exists()  # a dry run builds nothing


def test_build_command_builds(tmp_path, capsys):
    fake_releases.make_mmew(tmp_path / "mmew")
    args = ["mmew", "--manual_dir", str(tmp_path / "mmew"), "--data_dir", str(tmp_path / "data")]
    # Both flag forms of launch.py's --config.data.overrides.KEY: "=VALUE" and " VALUE".
    overrides = ["--overrides.crop_size=64", "--overrides.flow_method", "dis", "--workers", "1"]
    assert cli.main(args + overrides) == 0
    assert "built mmew/default-crop_size_64-flow_method_dis: 3 examples" in capsys.readouterr().out
    builder = data_builders.get_builder(
        "mmew", data_dir=tmp_path / "data", overrides={"crop_size": 64, "flow_method": "dis"}
    )
    assert builder.is_prepared()


def test_module_runs_from_the_command_line(tmp_path):
    fake_releases.make_smic(tmp_path / "smic")
    command = [sys.executable, "-m", "data_builders.cli", "smic", "--dry_run"]
    command += ["--manual_dir", str(tmp_path / "smic"), "--builder_config", "cropped"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "smic (config cropped)" in result.stdout
    assert "protocol smic_3class (builder default): negative 1, positive 1, surprise 1" in (
        result.stdout
    )


def test_generated_datasets_dry_run_prints_the_plan(tmp_path, capsys):
    # Nothing is rendered or built: the plan alone, clips cut from long recordings.
    out = tmp_path / "plan.json"
    args = ["synthetic_me", "--dry_run", "--data_dir", str(tmp_path), "--summary_json", str(out)]
    assert cli.main(args) == 0
    summary = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == summary
    assert "recordings by their annotated onset..offset" in summary["clips_cut_from"]
    counts = summary["clips_per_subject"]
    assert len(counts) == summary["subjects"] == 16 and len(set(counts.values())) > 3
    assert sum(counts.values()) == summary["clips"] == summary["intervals"]["micro"]
    assert cli.main(["synthetic_lv", "--dry_run", "--data_dir", str(tmp_path)]) == 0
    videos = json.loads(capsys.readouterr().out)
    assert videos["intervals"] == summary["intervals"] and videos["subjects"] == 16
    assert videos["videos"] == summary["recordings"]
    assert not list(tmp_path.glob("synthetic_*"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["casme2", "--dry_run"], "built from its licensed release.*CASME II is licence-gated"),
        (["casme4", "--dry_run"], "unknown dataset builder 'casme4'; known builders: casme2"),
        (["smic", "--builder_config", "large", "--dry_run"], "has no config 'large'"),
        (["smic", "--overrides.crop_size=big", "--dry_run"], r"crop_size='big'.*expected int"),
    ],
)
def test_bad_input_exits_with_a_message(args, message, tmp_path, capsys):
    assert cli.main(args + ["--data_dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert re.search(message, error, flags=re.DOTALL)


def test_importing_the_command_keeps_the_build_function(tmp_path):
    # The command is a module of its own name: importing it hides no function.
    assert data_builders.build is loading.build
    with pytest.raises(UserError, match="unknown dataset builder 'nope'"):
        data_builders.build("nope", data_dir=tmp_path)


def test_overrides_are_read_like_config_values(capsys):
    argv = ["mmew", "--overrides.crop_size=64", "--overrides.fps=29.97", "--dry_run"]
    argv += ["--overrides.flag", "TRUE", "--overrides.off=false", "--overrides.flow_method=dis"]
    rest, overrides = cli.split_overrides(argv)
    assert rest == ["mmew", "--dry_run"]
    assert overrides == {
        "crop_size": 64,
        "fps": 29.97,
        "flag": True,
        "off": False,
        "flow_method": "dis",
    }
    assert type(overrides["crop_size"]) is int and type(overrides["flag"]) is bool
    bad_flags = ("--overrides.crop_size", "--overrides.=3", "--overrides.crop_size --dry_run")
    for bad in (["mmew", *flag.split()] for flag in bad_flags):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(bad)
        assert exit_info.value.code == 2
        assert "expected --overrides.KEY=VALUE" in capsys.readouterr().err


MESSY = {
    **{
        name: lambda root, name=name: messy_releases.write_messy_release(name, root)
        for name in messy_releases.LAYOUTS
    },
    "smic": messy_releases.write_messy_smic,
    "megc2019": lambda root: messy_releases.write_messy_megc2019(root, COMPOSITE_LIST),
}


@pytest.mark.parametrize("name", list(MESSY))
def test_messy_release_dry_run_lists_every_problem_once_and_strict_refuses_it(
    name, tmp_path, capsys
):
    root = tmp_path / name
    messy = MESSY[name](root)
    summary_path = tmp_path / "summary.json"
    args = [name, "--manual_dir", str(root), "--dry_run", "--data_dir", str(tmp_path / "data")]
    args += ["--errata", str(messy.errata)]
    assert cli.main(args + ["--summary_json", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["samples"] == messy.samples
    assert messy_releases.summary_problems(summary) == messy.problems
    capsys.readouterr()
    assert cli.main(args + ["--strict"]) == 2
    skipped = sum(count for (key, _), count in messy.problems.items() if key == "skipped")
    assert f"error: {skipped} row(s) or clip(s) of " in capsys.readouterr().err


def test_messy_build_skips_a_clip_without_face_unless_strict(tmp_path, capsys):
    root = tmp_path / "casme2"
    messy = messy_releases.write_messy_release("casme2", root)
    args = ["casme2", "--manual_dir", str(root), "--data_dir", str(tmp_path / "data")]
    args += ["--workers", "1", "--overrides.crop_size=32", "--overrides.flow_size=8"]
    args += ["--overrides.num_frames=0", "--overrides.flow_method=dis"]
    assert cli.main([*args, "--strict"]) == 2  # the skipped rows, before any pixel
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    no_face = messy.rows["no face in the frames (found by the build only)"]
    built = messy.samples - 1
    assert f"built casme2/raw-crop_size_32-flow_method_dis-flow_size_8-num_frames_0: {built} " in (
        printed
    )
    # Named when it fails, and again in the list of everything skipped after the build.
    recap = printed.split("\nskipped (9):\n")[1]
    (failure,) = [line for line in recap.splitlines() if "no face found" in line]
    assert failure.startswith(f"  skipped: {no_face} clip sub08/EP09_08f: clip casme2/sub08/")
    assert "a landmarks sidecar would be read from" in failure
    examples = data_builders.load_examples(
        "casme2",
        tmp_path / "data",
        config="raw",
        overrides={"crop_size": 32, "flow_size": 8, "num_frames": 0, "flow_method": "dis"},
    )
    masked = [case for case in messy_releases.CASES if messy_releases.MASKED in case.expect]
    assert len(examples["sample_id"]) == built
    assert int((examples["action_units_known"] == 0).sum()) == len(masked)
    assert (examples["action_units"][examples["action_units_known"] == 0] == 0).all()
    # The same build asked for strictly: refused, since it skipped rows and a clip.
    with pytest.raises(UserError, match=r"the cached build .* skipped 9 row\(s\) or clip"):
        data_builders.build(
            "casme2",
            data_dir=tmp_path / "data",
            manual_dir=root,
            overrides={"crop_size": 32, "flow_size": 8, "num_frames": 0, "flow_method": "dis"},
            reading=data_builders.ReadOptions(strict=True),
        )


def test_annotation_chooses_among_candidate_sheets(tmp_path, capsys):
    root = tmp_path / "mmew"
    fake_releases.make_mmew(root)
    sheet = root / "MMEW_Micro_Exp.xlsx"
    copy = root / "MMEW_Micro_Exp (2).xlsx"
    copy.write_bytes(sheet.read_bytes())
    args = ["mmew", "--manual_dir", str(root), "--dry_run", "--data_dir", str(tmp_path / "d")]
    assert cli.main(args) == 2
    error = capsys.readouterr().err
    assert "holds 2 annotation sheets" in error and "Choose one with --annotation PATH" in error
    assert cli.main([*args, "--annotation", str(copy)]) == 0
    assert f"annotation: {copy}" in capsys.readouterr().out
