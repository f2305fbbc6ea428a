"""The workdir module: the layout's names, chunk records, and that using a trained workdir
(predict, export) needs none of the training code."""

import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from mer_jax import checkpoint, workdir
from mer_jax.errors import UserError
from mer_jax.workdir import Chunk, Replica


def test_predict_and_export_import_no_training_code():
    code = (
        "import sys, mer_jax.predict, mer_jax.export; "
        "print(sorted(m for m in sys.modules if m.startswith('mer_jax.train')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_chunk_round_trips_through_its_checkpoint_meta():
    chunk = Chunk(3, (Replica(0, 1), Replica(5, 1)), padded_size=4)
    meta = {"model": "ststnet", "replicas": chunk.replica_list, "padded_size": 4}
    assert Chunk.from_meta(3, meta) == chunk
    assert chunk.name == "chunk_003"
    assert chunk.rows == [Replica(0, 1), Replica(5, 1), Replica(5, 1), Replica(5, 1)]
    config = ml_collections.ConfigDict({"model": {"name": "ststnet"}})
    workdir.check_chunk_meta(meta, chunk, config, "here")
    with pytest.raises(UserError, match="model 'fr'"):
        workdir.check_chunk_meta({**meta, "model": "fr"}, chunk, config, "here")
    with pytest.raises(UserError, match="another layout"):
        workdir.check_chunk_meta({**meta, "replicas": [[0, 1]]}, chunk, config, "here")


def test_an_unfinished_chunk_is_named_with_what_finishes_it(tmp_path):
    directory = tmp_path / workdir.CHECKPOINTS / "chunk_000"
    ckpt = checkpoint.Checkpointer(directory, async_save=False)
    meta = {"model": "ststnet", "replicas": [[0, 0]], "padded_size": 1}
    ckpt.save(5, {"w": np.zeros(3, np.float32)}, meta)
    ckpt.close()
    ckpt = checkpoint.Checkpointer(directory, async_save=False)
    chunk, step, found = workdir.finished_chunk(ckpt, 0, 5, tmp_path)
    assert (chunk, step) == (Chunk(0, (Replica(0, 0),), 1), 5)
    assert found["replicas"] == [[0, 0]]
    with pytest.raises(UserError, match=r"no finished training \(step 5 of 10\).*--workdir"):
        workdir.finished_chunk(ckpt, 0, 10, tmp_path)
    ckpt.close()


def test_stage_folders_follow_the_grid():
    config = ml_collections.ConfigDict(
        {
            "train": {"learning_rate": 1e-3},
            "tune": {"grid": {"train": {"learning_rate": (1e-3, 3e-3)}}, "choices_from": None},
        }
    )
    points = workdir.grid_points(config)
    assert points == [{"train.learning_rate": 1e-3}, {"train.learning_rate": 3e-3}]
    assert workdir.apply_point(config, points[1]).train.learning_rate == 3e-3
    assert (workdir.inner_folder(1), workdir.outer_folder(12)) == ("inner_g01", "outer_g12")


def test_a_workdir_recorded_without_default_fields_resumes(tmp_path):
    """config.json written before every model field was recorded (or by a config built
    without launch's fill) describes the same run as the filled config."""
    import json

    import launch
    from configs import ststnet
    from mer_jax.train.engine import LosoRun

    bare = ststnet.get_config()
    (tmp_path / workdir.CHECKPOINTS / "chunk_000").mkdir(parents=True)
    (tmp_path / workdir.CHECKPOINTS / "chunk_000" / "1").mkdir()
    (tmp_path / workdir.CONFIG_JSON).write_text(bare.to_json_best_effort())
    filled = ststnet.get_config()
    launch.with_model_defaults(filled)
    assert "variant" in filled.model and "variant" not in json.loads(bare.to_json())["model"]
    LosoRun.check_workdir(filled, tmp_path, "train")
    filled.model.variant = "released"
    with pytest.raises(UserError, match="model.variant"):
        LosoRun.check_workdir(filled, tmp_path, "train")


def test_a_workdir_trained_before_a_train_setting_existed_resumes_at_its_old_value(tmp_path):
    """A config.json written before train.sampling and train.weight_decay_on existed is
    the same run as today's config at their defaults, not at another value."""
    import json

    from configs import ststnet
    from mer_jax.train.engine import LosoRun

    old = json.loads(ststnet.get_config().to_json())
    for name in ("sampling", "weight_decay_on"):
        del old["train"][name]
    (tmp_path / workdir.CHECKPOINTS / "chunk_000" / "1").mkdir(parents=True)
    (tmp_path / workdir.CONFIG_JSON).write_text(json.dumps(old))
    LosoRun.check_workdir(ststnet.get_config(), tmp_path, "train")
    changed = ststnet.get_config()
    changed.train.sampling = "balanced"
    with pytest.raises(UserError, match="train.sampling"):
        LosoRun.check_workdir(changed, tmp_path, "train")


def test_a_tuned_setting_moved_outside_the_grid_is_the_same_run(tmp_path):
    """Every run under a grid sets the grid's keys, so a config that has moved a tuned
    setting (to its nested choice) still describes a nested workdir; an untuned setting
    or the grid itself moved is another run."""
    from configs import ststnet
    from mer_jax.train.engine import LosoRun

    def nested(learning_rate, grid=(1e-3, 3e-3)):
        config = ststnet.get_config()
        config.train.learning_rate = learning_rate
        config.tune.grid = {"train": {"learning_rate": grid}}
        return config

    (tmp_path / workdir.CHECKPOINTS / "chunk_000" / "1").mkdir(parents=True)
    (tmp_path / workdir.CONFIG_JSON).write_text(nested(3e-3).to_json())
    LosoRun.check_workdir(nested(1e-3), tmp_path, "train")
    with pytest.raises(UserError, match="tune.grid.train.learning_rate"):
        LosoRun.check_workdir(nested(1e-3, (1e-3, 1e-2)), tmp_path, "train")
    moved = nested(3e-3)
    moved.train.batch_size = 7
    with pytest.raises(UserError, match="train.batch_size"):
        LosoRun.check_workdir(moved, tmp_path, "train")
    fixed = nested(1e-3)
    fixed.tune.grid = {}
    with pytest.raises(UserError, match="train.learning_rate"):
        LosoRun.check_workdir(fixed, tmp_path, "train")
