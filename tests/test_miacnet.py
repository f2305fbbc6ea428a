"""MIACNet and MA2MI: the shared preprocessing, branch shapes and parameter counts, the
branch transfer contract, a fine-tuning step and a pre-training run on moving disks."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mer_jax.errors import UserError
from mer_jax.evaluate.figures import plot_reconstructions
from mer_jax.models import MODELS, branch_settings, create_model
from mer_jax.models.ma2mi import MA2MI
from mer_jax.models.miacnet import (
    SHARED_BRANCHES,
    ActionBranch,
    BranchSettings,
    MIACNet,
    PositionBranch,
    preprocess_pair,
)

NUM_CLASSES = 5
# rbg keys: a threefry draw compiles for seconds per parameter shape (see test_models.py).
KEY_IMPL = "rbg"


def key(seed=0):
    return jax.random.key(seed, impl=KEY_IMPL)


def abstract(build):
    """A module built from shapes only: no parameter initialisation is compiled."""
    return nnx.eval_shape(build)


def traced(build, function, *args):
    """Output shapes of `function(build(), *args)`, the module built inside the trace."""
    return jax.eval_shape(lambda *a: function(build(), *a), *args)


def param_shapes(module):
    return jax.tree.map(lambda x: x.shape, nnx.to_pure_dict(nnx.state(module, nnx.Param)))


def num_params(module):
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def disks(n, size, seed, *, shift=None):
    """uint8 (n, size, size, 3) pairs: a bright disk on a dim gradient, then moved.

    The second frame shifts each disk by a known random offset of up to 3 pixels per
    axis, or by `shift` ((2,) for all, or (n, 2)).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = 40.0 + 40.0 * xx / size
    centres = rng.uniform(0.3 * size, 0.7 * size, (n, 2))
    offsets = rng.integers(-3, 4, (n, 2)) if shift is None else np.broadcast_to(shift, (n, 2))
    radius = size / 6

    def draw(centre):
        inside = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
        return np.where(inside, 220.0, background)

    first = np.stack([draw(c) for c in centres])
    second = np.stack([draw(c + o) for c, o in zip(centres, offsets, strict=True)])
    colour = np.array([1.0, 0.9, 0.8])
    to_uint8 = lambda a: jnp.asarray(np.clip(a[..., None] * colour, 0, 255).astype(np.uint8))
    return to_uint8(first), to_uint8(second)


# --- preprocessing ---------------------------------------------------------------------


def test_preprocess_pair_is_deterministic_unit_scale_and_zero_without_motion():
    first, second = disks(4, 128, seed=0, shift=(0, 2))
    run = jax.jit(functools.partial(preprocess_pair, input_size=28, grayscale=True))
    out, again, still = run(first, second), run(first, second), run(first, first)
    for name in ("motion", "face", "motion_scale"):
        np.testing.assert_array_equal(out[name], again[name])
    assert out["motion"].shape == out["face"].shape == (4, 28, 28, 1)
    assert out["motion"].dtype == jnp.float32
    # The face is the first frame in [0, 1]; the motion has unit root-mean-square.
    assert 0.0 <= float(out["face"].min()) and float(out["face"].max()) <= 1.0
    rms = np.sqrt(np.mean(np.asarray(out["motion"]) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(rms, 1.0, rtol=0.05)
    # A 2-pixel shift of a 220-level disk: a sizeable unscaled difference, scaled back.
    assert np.all(np.asarray(out["motion_scale"]) > 0.01)
    np.testing.assert_array_equal(still["motion"], 0.0)
    np.testing.assert_array_equal(still["face"], out["face"])


def test_preprocess_pair_rgb_and_resize_to_a_non_divisor():
    first, second = disks(2, 64, seed=1)
    out = jax.jit(functools.partial(preprocess_pair, input_size=56, grayscale=False))(first, second)
    assert out["motion"].shape == out["face"].shape == (2, 56, 56, 3)
    # A constant frame stays that constant through the resampling.
    flat = jnp.full((1, 128, 128, 3), 51, jnp.uint8)
    face = preprocess_pair(flat, flat, input_size=28, grayscale=False)["face"]
    np.testing.assert_allclose(face, 51 / 255, atol=1e-6)


# --- shapes and parameter counts ------------------------------------------------------


def test_branch_shapes_and_parameter_counts():
    grid, dim, channels, size = 7, 32, (16, 32), 28
    build_action = lambda: ActionBranch(
        1,
        input_size=size,
        grid=grid,
        features=channels,
        embed_features=dim,
        dtype=jnp.float32,
        rngs=nnx.Rngs(key()),
    )
    build_position = lambda: PositionBranch(
        1,
        grid=grid,
        embed_features=dim,
        depth=2,
        heads=4,
        mlp_ratio=2,
        dtype=jnp.float32,
        rngs=nnx.Rngs(key()),
    )
    images = jax.ShapeDtypeStruct((3, size, size, 1), jnp.float32)
    run = lambda module, x: module(x)
    assert traced(build_action, run, images).shape == (3, grid, grid, dim)
    assert traced(build_position, run, images).shape == (3, grid, grid, dim)
    action, position = abstract(build_action), abstract(build_position)

    def block(n_in, n_out):
        # conv3x3 (stride 2), GroupNorm, conv3x3, GroupNorm (no conv biases), 1x1
        # projection shortcut, attention conv3x3 on [mean, max] -> 1 map (with a bias).
        return 9 * n_in * n_out + 2 * n_out + 9 * n_out * n_out + 2 * n_out + n_in * n_out + 19

    expected_action = block(1, 16) + block(16, 32) + (32 * dim + dim)
    assert num_params(action) == expected_action == 18086
    # Pixel embedding, 7 x 7 location embeddings, 2 blocks (2 LayerNorms, qkv, output
    # projection, MLP 32 -> 64 -> 32), final LayerNorm.
    transformer = 2 * 2 * dim + (dim * 3 * dim + 3 * dim) + (dim * dim + dim)
    transformer += (dim * 2 * dim + 2 * dim) + (2 * dim * dim + dim)
    expected_position = (dim + dim) + grid * grid * dim + 2 * transformer + 2 * dim
    assert num_params(position) == expected_position == 18784


def test_default_models_shapes_and_parameter_counts():
    build_miacnet = lambda: MIACNet(NUM_CLASSES, rngs=nnx.Rngs(key()))
    build_pretrainer = lambda: MA2MI(rngs=nnx.Rngs(key()))
    miacnet, pretrainer = abstract(build_miacnet), abstract(build_pretrainer)
    branches = num_params(miacnet.action) + num_params(miacnet.position)
    assert branches == 18086 + 18784
    head = (32 * 32 + 32) + (32 * NUM_CLASSES + NUM_CLASSES)  # fusion, classifier
    assert num_params(miacnet) == branches + head == 38091
    # Decoder: bottleneck 1x1 32 -> 4; 3x3 (32 + 4) -> 32 at 7 x 7; 3x3 32 -> 16 at 14 x 14;
    # sub-pixel 3x3 16 -> 4 (one grey 2 x 2 block per pixel) -> 28 x 28.
    decoder = (32 * 4 + 4) + (9 * 36 * 32 + 32) + (9 * 32 * 16 + 16) + (9 * 16 * 4 + 4)
    assert num_params(pretrainer.decoder) == decoder
    assert num_params(pretrainer) == branches + decoder == 52606

    micro = {
        "onset_image": jax.ShapeDtypeStruct((6, 128, 128, 3), jnp.uint8),
        "apex_image": jax.ShapeDtypeStruct((6, 128, 128, 3), jnp.uint8),
    }

    def classify(model, batch):
        inputs = model.prepare(batch, key(), train=True)
        return inputs, model(inputs, train=False)

    inputs, outputs = traced(build_miacnet, classify, micro)
    assert inputs["motion"].shape == inputs["face"].shape == (6, 28, 28, 1)
    assert outputs["logits"].shape == (6, NUM_CLASSES)
    assert outputs["logits"].dtype == jnp.float32

    macro = {
        "frame_t": jax.ShapeDtypeStruct((6, 64, 64, 3), jnp.uint8),
        "frame_t_plus_k": jax.ShapeDtypeStruct((6, 64, 64, 3), jnp.uint8),
    }
    inputs, outputs = traced(build_pretrainer, classify, macro)
    for name in ("reconstruction", "target", "base"):
        assert outputs[name].shape == (6, 28, 28, 1) and outputs[name].dtype == jnp.float32
    assert MIACNet.fields == ("onset_image", "apex_image")
    assert MA2MI.fields == ("frame_t", "frame_t_plus_k")


def test_flatten_head_keeps_locations_and_rejects_unknown_heads():
    build = lambda: MIACNet(NUM_CLASSES, head="flatten", rngs=nnx.Rngs(key()))
    flat = abstract(build)
    # The classifier reads all 7 x 7 locations of the width-32 fused map.
    assert num_params(flat.classifier) == 7 * 7 * 32 * NUM_CLASSES + NUM_CLASSES
    assert num_params(flat) == 38091 - (32 * NUM_CLASSES + NUM_CLASSES) + 7845 == 45771
    inputs = {
        "motion": jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.float32),
        "face": jax.ShapeDtypeStruct((4, 28, 28, 1), jnp.float32),
    }
    outputs = traced(build, lambda model, x: model(x, train=False), inputs)
    assert outputs["logits"].shape == (4, NUM_CLASSES)
    with pytest.raises(ValueError, match="head must be one of"):
        abstract(lambda: MIACNet(NUM_CLASSES, head="max", rngs=nnx.Rngs(key())))


@pytest.mark.parametrize(
    "branch_kwargs",
    [
        {},
        {
            "input_size": 56,
            "grayscale": False,
            "grid": 14,
            "action_features": (8, 16, 24),
            "embed_features": 16,
            "vit_depth": 1,
            "vit_heads": 2,
            "vit_mlp_ratio": 1,
        },
    ],
)
def test_miacnet_and_ma2mi_share_branch_shapes(branch_kwargs):
    miacnet = abstract(lambda: MIACNet(3, rngs=nnx.Rngs(key()), **branch_kwargs))
    pretrainer = abstract(
        lambda: MA2MI(rngs=nnx.Rngs(key()), recon_size=28, decoder_features=(8,), **branch_kwargs)
    )
    for name in SHARED_BRANCHES:
        mine, theirs = param_shapes(getattr(miacnet, name)), param_shapes(getattr(pretrainer, name))
        assert jax.tree.structure(mine) == jax.tree.structure(theirs)
        assert mine == theirs
    config = {"name": "miacnet", **branch_kwargs}
    pretraining = {"name": "ma2mi", **branch_kwargs, "hflip": True, "recon_size": 56}
    assert branch_settings(config) == branch_settings(pretraining)


def test_branch_settings_are_shared_and_fill_in():
    assert MIACNet.BRANCH_SETTINGS is MA2MI.BRANCH_SETTINGS is BranchSettings
    names = {field.name for field in dataclasses.fields(BranchSettings)}
    assert set(branch_settings({"name": "ma2mi"})) == names
    assert branch_settings({"name": "miacnet"}) == branch_settings({"name": "ma2mi"})
    # Lists (a config read back from JSON) and tuples compare equal.
    listed = branch_settings({"name": "miacnet", "action_features": [16, 32]})
    assert listed == branch_settings({"name": "miacnet"})
    resized = branch_settings({"name": "miacnet", "grid": 14, "input_size": 56})
    assert resized != branch_settings({"name": "miacnet"})
    assert MA2MI.SHARED_BRANCHES == SHARED_BRANCHES == ("action", "position")
    with pytest.raises(UserError, match="no pre-trainable branches"):
        branch_settings({"name": "ststnet"})


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="power of 2"):
        abstract(lambda: MIACNet(3, input_size=30, grid=7, rngs=nnx.Rngs(key())))
    with pytest.raises(ValueError, match="stride-2 blocks"):
        abstract(lambda: MIACNet(3, action_features=(16,), rngs=nnx.Rngs(key())))
    with pytest.raises(ValueError, match="divisible"):
        abstract(lambda: MIACNet(3, embed_features=30, rngs=nnx.Rngs(key())))


def test_registry_builds_miacnet():
    assert MODELS["miacnet"] is MIACNet
    model = abstract(
        lambda: create_model({"name": "miacnet", "dropout": 0.5}, 3, rngs=nnx.Rngs(key()))
    )
    assert isinstance(model, MIACNet) and model.num_classes == 3


# --- training -------------------------------------------------------------------------


def adam_step(graphdef, loss_of, tx, compiler_options):
    """One jitted value_and_grad + adam update; the batch is an argument (not a constant).

    The tests run a few dozen steps, so the compile time dominates them: XLA's backend
    optimisation level 0 halves it (for steps that then run 2-3x slower) and disabling
    LLVM's expensive passes saves a quarter (for the same speed).
    """

    def step(params, rest, opt_state, batch, step_key):
        def loss_fn(params):
            model = nnx.merge(graphdef, params, rest, copy=True)
            return loss_of(model, batch, step_key)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, aux, grads

    return jax.jit(step, compiler_options=compiler_options)


FAST_COMPILE = {"xla_backend_optimization_level": 0}
FAST_STEPS = {"xla_llvm_disable_expensive_passes": True}


def build_default(model_class):
    if model_class is MIACNet:
        return MIACNet(NUM_CLASSES, dropout=0.25, hflip=True, rngs=nnx.Rngs(key()))
    return MA2MI(rngs=nnx.Rngs(key()))


@functools.cache
def initial_states():
    """{model class: (graphdef, params, rest)} of the default MIACNet and MA2MI.

    Both initialised in one jit compiled at optimisation level 0: every random draw
    compiles per parameter shape, and eagerly that took longer than both training tests'
    steps together.
    """
    classes = (MIACNet, MA2MI)

    def init():
        return [tuple(nnx.split(build_default(c), nnx.Param, ...)[1:]) for c in classes]

    states = jax.jit(init, compiler_options=FAST_COMPILE)()
    graphdefs = [nnx.graphdef(abstract(functools.partial(build_default, c))) for c in classes]
    return {c: (g, *state) for c, g, state in zip(classes, graphdefs, states, strict=True)}


def test_miacnet_training_step_reaches_every_parameter_and_lowers_the_loss():
    graphdef, params, rest = initial_states()[MIACNet]
    # The class is the disk's motion (up, down, still, sideways, diagonal): flips keep it.
    labels = np.arange(10) % NUM_CLASSES
    motions = np.array([[-3, 0], [3, 0], [0, 0], [0, 3], [3, 3]])
    onset, apex = disks(10, 128, seed=2, shift=motions[labels])
    batch = {"onset_image": onset, "apex_image": apex}
    labels = jnp.asarray(labels)

    def loss_of(model, batch, step_key):
        prepare_key, dropout_key = jax.random.split(step_key)
        inputs = model.prepare(batch["data"], prepare_key, train=True)
        outputs = model(inputs, train=True, key=dropout_key)
        return model.loss(outputs, batch["labels"])  # (loss, terms)

    tx = optax.adam(1e-2)
    step = adam_step(graphdef, loss_of, tx, FAST_COMPILE)
    opt_state = tx.init(params)
    data = {"data": batch, "labels": labels}
    new, opt_state, first_loss, terms, grads = step(params, rest, opt_state, data, key(1))
    assert set(terms) == {"ce"}
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        assert np.abs(np.asarray(grad)).max() > 0, jax.tree_util.keystr(path)
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), params, new)
    assert all(jax.tree.leaves(changed))
    losses = [float(first_loss)]
    for i in range(14):
        new, opt_state, loss, _, _ = step(new, rest, opt_state, data, key(2 + i))
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses


def test_ma2mi_reconstruction_loss_falls_on_moving_disks(tmp_path):
    """80 adam steps of pre-training on disks shifted by known offsets: the loss falls
    clearly, and the reconstruction beats copying I_t (the action code carries motion).

    Measured: the loss falls to 0.57 of its start, the error to 0.73 of copying's.
    """
    graphdef, params, rest = initial_states()[MA2MI]
    first, second = disks(96, 64, seed=3)
    corpus = {"frame_t": first, "frame_t_plus_k": second}

    def loss_of(model, batch, step_key):
        outputs = model(model.prepare(batch, step_key, train=True), train=True)
        loss, terms = model.loss(outputs)
        return loss, (terms, outputs)

    tx = optax.adam(3e-3)
    step = adam_step(graphdef, loss_of, tx, FAST_STEPS)
    opt_state = tx.init(params)
    trained, losses, error_ratios = params, [], []
    rng = np.random.default_rng(5)
    for i in range(80):
        pick = rng.choice(96, 16, replace=False)
        batch = {name: values[pick] for name, values in corpus.items()}
        trained, opt_state, loss, (terms, outputs), _ = step(
            trained, rest, opt_state, batch, key(i)
        )
        losses.append(float(loss))
        error_ratios.append(float(terms["mae"] / terms["copy_mae"]))
    assert set(terms) == {"l1", "gradient", "mae", "copy_mae"}
    assert np.isfinite(losses).all()
    # The zero-initialised output starts at the copy-I_t prediction (ratio 1).
    np.testing.assert_allclose(error_ratios[0], 1.0, rtol=1e-6)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    assert np.mean(error_ratios[-5:]) < 0.9, error_ratios
    # Every parameter, the action branch's included, has moved from its initial value.
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), params, trained)
    assert all(jax.tree.leaves(changed)), changed

    path = tmp_path / "reconstructions.png"
    plot_reconstructions(
        path, batch["frame_t"][:4], outputs["target"][:4], outputs["reconstruction"][:4]
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ma2mi_flips_both_frames_together():
    model = nnx.merge(*initial_states()[MA2MI])
    first, second = disks(16, 64, seed=6)
    batch = {"frame_t": first, "frame_t_plus_k": second}
    prepare = jax.jit(
        lambda batch, k, train: model.prepare(batch, k, train=train), static_argnums=2
    )
    plain, flipped = prepare(batch, key(7), False), prepare(batch, key(7), True)
    mirrored = {name: jnp.flip(plain[name], axis=2) for name in ("target", "base", "motion")}
    is_plain = np.all(np.isclose(flipped["target"], plain["target"]), axis=(1, 2, 3))
    is_mirrored = np.all(
        np.isclose(flipped["target"], mirrored["target"], atol=1e-6), axis=(1, 2, 3)
    )
    assert is_plain.any() and is_mirrored.any() and (is_plain | is_mirrored).all()
    for name in ("base", "motion"):  # the same samples flipped in every input
        np.testing.assert_allclose(
            flipped[name][is_mirrored], mirrored[name][is_mirrored], rtol=1e-4, atol=1e-5
        )
        np.testing.assert_allclose(
            flipped[name][is_plain], plain[name][is_plain], rtol=1e-4, atol=1e-5
        )


def test_fine_tuning_sees_what_pre_training_saw():
    """MIACNet's (onset, apex) and MA2MI's (I_t, I_{t+k}) inputs of one pair are equal."""
    fine_tune = nnx.merge(*initial_states()[MIACNet])
    pre_train = nnx.merge(*initial_states()[MA2MI])
    first, second = disks(4, 128, seed=8)

    @jax.jit
    def both(first, second):
        micro = fine_tune.prepare({"onset_image": first, "apex_image": second}, key(), train=False)
        macro = pre_train.prepare({"frame_t": first, "frame_t_plus_k": second}, key(), train=False)
        return micro, macro

    micro, macro = both(first, second)
    for name in ("motion", "face", "motion_scale"):
        np.testing.assert_array_equal(micro[name], macro[name])


def test_position_input_none_shows_no_face_to_the_position_branch():
    # Same motion, two different faces: with position_input="none" the logits cannot
    # tell them apart (no identity reaches the classifier); with the onset they do.
    motion = jax.random.normal(key(1), (2, 28, 28, 1))
    faces = jax.random.uniform(key(2), (2, 28, 28, 1))
    inputs = {"motion": jnp.concatenate([motion[:1], motion[:1]]), "face": faces}

    def logits(position_input):
        model = MIACNet(NUM_CLASSES, position_input=position_input, rngs=nnx.Rngs(key()))
        return np.asarray(model(inputs, train=False)["logits"])

    blank, onset = logits("none"), logits("onset")
    np.testing.assert_allclose(blank[0], blank[1], rtol=1e-6)
    assert np.abs(onset[0] - onset[1]).max() > 1e-4
    with pytest.raises(ValueError, match="position_input must be one of"):
        abstract(lambda: MIACNet(NUM_CLASSES, position_input="apex", rngs=nnx.Rngs(key())))
