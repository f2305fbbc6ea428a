"""MA2MI pre-training runs, and MIACNet fine-tuning initialised from them (init_from + guard)."""

import json

import fixtures
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import data_builders
from configs import ma2mi_pretrain, miacnet
from mer_jax import models
from mer_jax.errors import UserError
from mer_jax.models.miacnet import MIACNet
from mer_jax.train import init_from, optim, pretraining

synthetic_data_dir = fixtures.synthetic_data_dir

# 2 subjects x 1 clip of the macro generator, 8 pairs a clip at 32 x 32: seconds to build.
MACRO_OVERRIDES = {
    "num_subjects": 2,
    "clips_per_subject": 1,
    "crop_size": 64,
    "pair_size": 32,
    "pairs_per_clip": 8,
}
# Small branches that fit both the 32 px pairs and the 64 px micro crops.
BRANCHES = {
    "input_size": 14,
    "grid": 7,
    "action_features": (8,),
    "embed_features": 8,
    "vit_depth": 1,
    "vit_heads": 2,
}


@pytest.fixture(scope="module")
def macro_data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("macro_data")
    data_builders.build("synthetic_macro", data_dir=data_dir, overrides=MACRO_OVERRIDES, workers=1)
    return data_dir


def set_keys(config, changes):
    for dotted, value in changes.items():
        *path, name = dotted.split(".")
        holder = config
        for part in path:
            holder = holder[part]
        holder[name] = value
    return config


def pretrain_config(data_dir, **changes):
    config = ma2mi_pretrain.get_config()
    set_keys(
        config,
        {
            "data.data_dir": str(data_dir),
            "data.overrides": MACRO_OVERRIDES,
            "data.streaming": "resident",
            "model.recon_size": 14,
            "model.decoder_features": (8,),
            **{f"model.{k}": v for k, v in BRANCHES.items()},
            "train.steps": 10,
            "train.batch_size": 16,
            "train.warmup_steps": 0,
            "engine.steps_per_dispatch": 5,
            "train.checkpoint_every": 5,
            **changes,
        },
    )
    return config


def finetune_config(data_dir, init_from, **changes):
    config = fixtures.tiny_config(data_dir, base="miacnet")
    return set_keys(
        config,
        {
            "engine.mode": "sequential",
            "seeds": (0,),
            "train.steps": 20,
            "init_from": str(init_from),
            **{f"model.{k}": v for k, v in BRANCHES.items()},
            **changes,
        },
    )


@pytest.fixture(scope="module")
def pretrained_workdir(macro_data_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ma2mi")
    metrics = fixtures.make_run(pretrain_config(macro_data_dir), workdir).train()
    return workdir, metrics


def test_pretraining_writes_its_outputs(pretrained_workdir):
    workdir, metrics = pretrained_workdir
    outputs = ("config.json", pretraining.CORPUS_JSON, pretraining.METRICS_JSON, "pretrained.json")
    for name in outputs:
        assert (workdir / name).is_file(), name
    assert (workdir / pretraining.FIGURE_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert metrics["steps"] == 10 and metrics["source"] == "resident"
    assert metrics["pairs_per_s"] > 0
    assert metrics["frames_per_s"] == pytest.approx(2 * metrics["pairs_per_s"])
    assert np.isfinite(metrics["fixed_pairs_eval"]["loss"])
    corpus = json.loads((workdir / pretraining.CORPUS_JSON).read_text())
    assert corpus["subjects"] == ["synthetic_macro/sub01", "synthetic_macro/sub02"]
    # A finished run restarted in its workdir trains no further and says the same.
    again = fixtures.make_run(pretrain_config(workdir.parent), workdir)
    assert again.evaluate()["fixed_pairs_eval"] == metrics["fixed_pairs_eval"]


def test_streaming_through_grain_without_excluded_subjects(macro_data_dir, tmp_path):
    config = pretrain_config(
        macro_data_dir,
        **{"data.streaming": "grain", "data.exclude_subjects": ("synthetic_macro/sub02",)},
    )
    metrics = fixtures.make_run(config, tmp_path).train()
    assert metrics["source"] == "grain" and metrics["steps"] == 10
    assert np.isfinite(metrics["final_train"]["loss"])
    assert json.loads((tmp_path / "pretrained.json").read_text())["subjects"] == [
        "synthetic_macro/sub01"
    ]
    wrong = pretrain_config(macro_data_dir, **{"data.exclude_subjects": ("casme3/spNO.1",)})
    with pytest.raises(UserError, match="does not hold"):
        fixtures.make_run(wrong, tmp_path / "other")


def test_init_from_restores_exactly_the_pretrained_branches(pretrained_workdir, synthetic_data_dir):
    workdir, _ = pretrained_workdir
    run = fixtures.make_run(finetune_config(synthetic_data_dir, workdir), workdir.parent / "ft")
    keys = jax.numpy.stack([jax.random.key(0), jax.random.key(1)])  # two replicas
    state = jax.device_get(jax.jit(run.plain_stage.functions.init)(keys))
    config = run.config
    exported = init_from.prepare(workdir, config.model, ["synthetic_me/sub99"])
    params = nnx.to_pure_dict(state["params"])
    for branch in ("action", "position"):
        for replica in (0, 1):
            jax.tree.map(
                lambda mine, theirs, r=replica: np.testing.assert_array_equal(mine[r], theirs),
                params[branch],
                _with_keys_of(params[branch], exported.params[branch]),
            )
    # The layers pre-training has no counterpart for keep each replica's own initialisation.
    kernel = params["classifier"]["kernel"]
    assert not np.allclose(kernel[0], kernel[1])


def _with_keys_of(model_tree, loaded_tree):
    """The checkpoint stores list indices as strings; line them up with the model's keys."""
    if isinstance(model_tree, dict):
        return {k: _with_keys_of(v, loaded_tree[str(k)]) for k, v in model_tree.items()}
    return loaded_tree


def test_fine_tuning_from_pretraining_runs(pretrained_workdir, synthetic_data_dir, tmp_path):
    workdir, _ = pretrained_workdir
    config = finetune_config(synthetic_data_dir, workdir)
    metrics = fixtures.make_run(config, tmp_path).train()
    assert metrics["n_folds"] == fixtures.NUM_SUBJECTS


def test_guard_rejects_a_corpus_sharing_subjects(pretrained_workdir, synthetic_data_dir, tmp_path):
    workdir, _ = pretrained_workdir
    # The same pre-training, as if its corpus had held two people of the downstream data.
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    (leaky / init_from.EXPORT_DIR).symlink_to(workdir / init_from.EXPORT_DIR)
    meta = json.loads((workdir / init_from.EXPORT_JSON).read_text())
    meta["subjects"] += ["synthetic_me/sub01", "synthetic_me/sub03"]
    (leaky / init_from.EXPORT_JSON).write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"2 subject\(s\) of this LOSO run.*sub01, .*sub03"):
        fixtures.make_run(finetune_config(synthetic_data_dir, leaky), tmp_path / "ft")


def test_branch_settings_must_match_the_pretraining(
    pretrained_workdir, synthetic_data_dir, tmp_path
):
    workdir, _ = pretrained_workdir
    config = finetune_config(synthetic_data_dir, workdir, **{"model.embed_features": 24})
    with pytest.raises(UserError, match=r"model.embed_features=8 \(here 24\)"):
        fixtures.make_run(config, tmp_path)


def test_miacnet_config_feeds_the_pretraining_config():
    fine_tuning = models.branch_settings(miacnet.get_config().model)
    assert models.branch_settings(ma2mi_pretrain.get_config().model) == fine_tuning


def test_pretrained_lr_scale_slows_or_freezes_only_the_loaded_branches():
    params = {name: {"w": jnp.ones(3)} for name in ("action", "position", "classifier")}
    grads = {"action": {"w": jnp.full(3, 0.5)}, "position": {"w": jnp.full(3, 2.0)}}
    # Gradients of the parameters' sign: AdamW's first step then adds its decay to the
    # update instead of cancelling it (a near-zero update compares only to rounding).
    grads["classifier"] = {"w": jnp.array([1.0, 0.5, 3.0])}

    def first_update(scale, branches=("action", "position")):
        train = miacnet.get_config().train
        train.pretrained_lr_scale = scale
        tx = optim.make_optimizer(train, branches)
        return tx.update(grads, tx.init(params), params)[0]

    full, slow, frozen = first_update(1.0), first_update(0.1), first_update(0.0)
    for branch in ("action", "position"):
        np.testing.assert_allclose(slow[branch]["w"], 0.1 * full[branch]["w"], rtol=1e-6)
        np.testing.assert_array_equal(frozen[branch]["w"], 0.0)
        assert np.all(np.abs(full[branch]["w"]) > 0)
    for update in (slow, frozen):
        np.testing.assert_allclose(update["classifier"]["w"], full["classifier"]["w"], rtol=1e-6)
    # From scratch (no loaded branches) the scale has nothing to act on.
    scratch = first_update(0.1, branches=())
    np.testing.assert_allclose(scratch["action"]["w"], full["action"]["w"])
    with pytest.raises(UserError, match=">= 0"):
        first_update(-1.0)


def test_weight_decay_on_kernels_leaves_norms_biases_and_embeddings_alone():
    # A real MIACNet's parameters: LayerNorm scales, biases and the ViT's location
    # embeddings must be left undecayed, every kernel decayed. Zero gradients: the update
    # is the decay alone.
    model = nnx.eval_shape(lambda: MIACNet(5, rngs=nnx.Rngs(0)))
    params = jax.tree.map(lambda x: jnp.ones(x.shape, x.dtype), nnx.state(model, nnx.Param))
    grads = jax.tree.map(jnp.zeros_like, params)

    def decayed(decay_on):
        train = miacnet.get_config().train
        train.weight_decay, train.weight_decay_on = 1.0, decay_on
        tx = optim.make_optimizer(train)
        updates = tx.update(grads, tx.init(params), params)[0]
        return {
            jax.tree_util.keystr(path): bool(np.any(np.asarray(u) != 0))
            for path, u in jax.tree_util.tree_leaves_with_path(updates)
        }

    everything, kernels = decayed("all"), decayed("kernels")
    assert all(everything.values())
    assert {path for path, moved in kernels.items() if moved} == {
        path for path in kernels if "['kernel']" in path
    }
    assert kernels["['position']['location'].value"] is False
    assert kernels["['position']['norm']['scale'].value"] is False
    train = miacnet.get_config().train
    train.weight_decay_on = "biases"
    with pytest.raises(UserError, match="weight_decay_on"):
        optim.make_optimizer(train)
