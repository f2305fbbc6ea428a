"""`python -m data_builders.cli`: the dry-run check and the build command."""

import json
import re
import subprocess
import sys
from pathlib import Path

import fake_releases
import pytest

import data_builders
from data_builders import cli, loading
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
    assert [len(summary[key]) for key in ("skipped", "fixed", "gaps")] == [2, 0, 1]
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["casme2", "--dry_run"], "built from its licensed release.*CASME II is licence-gated"),
        (["synthetic_me", "--dry_run"], "synthetic_me is generated"),
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
