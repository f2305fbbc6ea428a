"""`python -m mer_jax.doctor`: one line per fact and a verdict, on a bare machine too."""

import importlib.util
import json
import subprocess
import sys

import jax
import pytest

from mer_jax import doctor

FACTS = (
    "python",
    "jax",
    "jaxlib",
    "flax",
    "orbax-checkpoint",
    "backend",
    "devices",
    "device memory",
    "engine.mode=auto",
    "engine.loop=auto",
    "data cache",
    "dlib landmark model",
)


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """No data cache at all: the default location points at a folder that does not exist."""
    monkeypatch.setenv("MER_JAX_DATA_DIR", str(tmp_path / "no_cache"))
    return tmp_path / "no_cache"


def test_the_command_prints_every_fact_and_a_ready_verdict(empty_cache):
    from fixtures import launch_env

    env = {**launch_env(), "MER_JAX_DATA_DIR": str(empty_cache)}
    text = subprocess.run(
        [sys.executable, "-m", "mer_jax.doctor"], env=env, capture_output=True, text=True
    )
    assert text.returncode == 0, text.stderr[-3000:]
    lines = text.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == list(FACTS)
    assert lines[-1].startswith("READY: training runs on ")
    assert f"{empty_cache} absent" in text.stdout
    assert "engine.mode=auto:    sequential" in text.stdout  # this CPU



def test_json_output(empty_cache, capsys):
    assert doctor.main(["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["facts"]) == list(FACTS) and result["ready"] is True
    assert result["facts"]["backend"] == "cpu" and result["facts"]["jax"] == jax.__version__


def test_facts_on_the_8_test_devices_with_a_cache(tmp_path, monkeypatch):
    build = tmp_path / "synthetic_me" / "default" / "1.1.0"
    build.mkdir(parents=True)
    (build / "dataset_info.json").write_text("{}")
    (tmp_path / "synthetic_me" / "other" / "incomplete.1_1.1.0").mkdir(parents=True)
    monkeypatch.setenv("MER_JAX_DATA_DIR", str(tmp_path))
    values = doctor.report(doctor.gather())["facts"]
    assert values["devices"] == "8 x cpu"
    assert values["engine.loop=auto"] == "python"
    # Only the complete build counts.
    assert values["data cache"] == f"{tmp_path}: 1 build (synthetic_me/default/1.1.0)"


def test_a_missing_landmark_model_is_a_warning_not_a_crash(empty_cache, monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without_models(name, *args):
        return None if name == "face_recognition_models" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_models)
    facts = doctor.gather()
    values = {fact.name: fact.value for fact in facts}
    assert values["dlib landmark model"] == "missing"
    ready, line = doctor.verdict(facts)
    assert ready and line.startswith("READY WITH WARNINGS")
    assert "pip install face-recognition-models" in line
    assert doctor.main([]) == 0


def test_an_attached_gpu_next_to_a_cpu_jax_is_named_with_its_fix(empty_cache, monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: f"/usr/bin/{name}")
    ready, line = doctor.verdict(doctor.gather())
    assert ready
    assert "NVIDIA GPU is attached: a CPU jaxlib replaced the platform's jax" in line
    assert "pip install -e '.[cuda]'" in line


def test_a_jax_that_does_not_start_is_not_ready(empty_cache, monkeypatch, capsys):
    def broken():
        raise RuntimeError("Unable to initialize backend 'tpu'")

    monkeypatch.setattr(jax, "devices", broken)
    assert doctor.main([]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "NOT READY: jax does not start: Unable to initialize backend 'tpu'"
