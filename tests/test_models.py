"""Tests of the MER methods (STSTNet, FR), their shared layers and the model registry."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from mer_jax.errors import UserError
from mer_jax.models import MODELS, create_model, layers, model_class
from mer_jax.models.fr import FR
from mer_jax.models.layers import (
    cross_entropy,
    hflip_flow,
    max_pool,
    minmax_normalize,
    resize_flow,
)
from mer_jax.models.ststnet import STSTNet

NUM_CLASSES = 3
# Every random draw is compiled once per shape, and a threefry draw costs XLA ~1.4 s of
# CPU (jax_threefry_partitionable) against ~0.25 s for rbg: with some twenty distinct
# parameter shapes that compile time was most of this file's run time.
KEY_IMPL = "rbg"
CONFIGS = {
    "ststnet": {"name": "ststnet"},
    "fr": {"name": "fr"},
    # Non-default FR: strain stream, hidden layer and dropout, so the dropout key path runs.
    "fr_strain_hidden": {"name": "fr", "use_strain": True, "hidden_features": 16, "dropout": 0.25},
}


def prng_key(seed):
    return jax.random.key(seed, impl=KEY_IMPL)


def rngs(seed=0):
    return nnx.Rngs(prng_key(seed))


def make_batch(size=28, n=8, seed=0):
    """A built-dataset-like batch: float16 flow and strain with a class-dependent motion.

    Each class moves a central blob its own way (class 0: +u, class 1: -u, class 2: +v),
    a difference that survives per-channel min-max and global pooling, so both models
    can fit the tiny batch within a few steps.
    """
    rng = np.random.default_rng(seed)  # numpy: no per-shape compile of a random draw
    labels = np.arange(n) % NUM_CLASSES
    grid = np.linspace(-1.0, 1.0, size)
    blob = np.exp(-(grid[:, None] ** 2 + grid[None, :] ** 2) * 4)
    motion = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])[labels]
    flow = 0.3 * rng.standard_normal((n, size, size, 2))
    flow += 2.0 * blob[None, :, :, None] * motion[:, None, None, :]
    strain = np.abs(rng.standard_normal((n, size, size, 1)))
    batch = {"flow": jnp.asarray(flow, jnp.float16), "strain": jnp.asarray(strain, jnp.float16)}
    labels = jnp.asarray(labels)
    return batch, labels


def num_params(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


# --- parameter counts ---------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [3, 5])
def test_ststnet_parameter_count(num_classes):
    # conv 3x3 on 3 input channels, 3 + 5 + 8 filters, each with a bias.
    convs = sum(3 * 3 * 3 * filters + filters for filters in (3, 5, 8))
    # 28 -> max-pool 3/3 'same' -> 10 -> avg-pool 2/2 -> 5; 16 maps of 5 x 5 flattened.
    dense = 16 * 5 * 5 * num_classes + num_classes
    expected = {3: 1651, 5: 2453}[num_classes]
    assert convs + dense == expected
    model = create_model({"name": "ststnet"}, num_classes, rngs=rngs())
    assert num_params(model) == expected
    # The released code: the same convs and dense layer (28 -> conv padding 2 -> 30 ->
    # max-pool 3/3 padding 1 -> 10 -> avg-pool -> 5), plus a BatchNorm scale and bias per map.
    released = create_model({"name": "ststnet", "variant": "released"}, num_classes, rngs=rngs())
    assert num_params(released) == expected + 2 * 16 == {3: 1683, 5: 2485}[num_classes]


def test_ststnet_released_variant_shapes_batch_norm_and_dropout():
    model = create_model({"name": "ststnet", "variant": "released"}, NUM_CLASSES, rngs=rngs())
    batch, _ = make_batch()
    inputs = model.prepare(batch, prng_key(0), train=False)
    assert inputs["motion"].shape == (8, 28, 28, 3)
    # The PyTorch layer shapes: conv padding 2 gives 30 x 30 maps.
    assert model.streams(inputs["motion"]).shape == (8, 30, 30, 16)
    assert model.norm.mean.shape == (16,)
    evaluated = model(inputs, train=False)["logits"]
    assert evaluated.shape == (8, NUM_CLASSES) and evaluated.dtype == jnp.float32
    np.testing.assert_array_equal(model(inputs, train=False)["logits"], evaluated)
    # Training drops out (other keys, other logits) and moves the running statistics.
    first = model(inputs, train=True, key=prng_key(1))["logits"]
    second = model(inputs, train=True, key=prng_key(2))["logits"]
    assert not np.allclose(first, second)
    assert np.abs(np.asarray(model.norm.mean[...])).max() > 0
    with pytest.raises(UserError, match="variant 'code'"):
        create_model({"name": "ststnet", "variant": "code"}, NUM_CLASSES, rngs=rngs())


def test_max_pool_integer_padding_is_pytorchs():
    x = np.random.default_rng(0).standard_normal((2, 30, 30, 3)).astype(np.float32)
    # PyTorch MaxPool2d(3, stride=3, padding=1): -inf borders, floor((30 + 2 - 3) / 3) + 1.
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    expected = np.stack(
        [
            np.stack(
                [
                    padded[:, 3 * i : 3 * i + 3, 3 * j : 3 * j + 3].max(axis=(1, 2))
                    for j in range(10)
                ],
                axis=1,
            )
            for i in range(10)
        ],
        axis=1,
    )
    np.testing.assert_array_equal(max_pool(jnp.asarray(x), 3, padding=1), expected)


def test_batch_norm_running_statistics_follow_pytorch():
    # Regression: Flax's default momentum (0.99) left the running statistics of FR, LTR3O
    # and the released STSTNet mostly at their initial values after a LOSO fold's short
    # schedule, so evaluation normalised unlike training. PyTorch's update moves them 0.1
    # of the way to each batch's statistics.
    norm = layers.batch_norm(4, dtype=jnp.float32, rngs=rngs())
    x = jnp.asarray(np.random.default_rng(0).normal(3.0, 2.0, (64, 4)), jnp.float32)
    steps = 20
    for _ in range(steps):
        norm(x, use_running_average=False)
    # The initial value's share after `steps` PyTorch updates (PyTorch would blend in the
    # unbiased batch variance, 64/63 of this one: immaterial here).
    left = 0.9**steps
    mean, var = np.asarray(x).mean(0), np.asarray(x).var(0)
    np.testing.assert_allclose(norm.mean[...], (1 - left) * mean, rtol=1e-5)
    np.testing.assert_allclose(norm.var[...], left + (1 - left) * var, rtol=1e-4)
    assert norm.epsilon == 1e-5
    # Every BatchNorm of the models that have one is this one.
    for config in ({"name": "fr"}, {"name": "ltr3o"}, {"name": "ststnet", "variant": "released"}):
        model = nnx.eval_shape(lambda c=config: create_model(c, NUM_CLASSES, rngs=rngs()))
        norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]
        assert norms and all(n.momentum == 0.9 for n in norms), config


def test_fr_default_parameter_count():
    def inception(n_in, width):
        # 1x1, 3x3, 5x5 and pool -> 1x1 kernels without biases, then BatchNorm scale + shift.
        return sum(k * k * n_in * width for k in (1, 3, 5, 1)) + 2 * 4 * width

    stream = inception(1, 8) + inception(32, 8)  # block 2 reads block 1's 4 x 8 channels
    shared = 2 * 4 * 8  # u and v streams, 32 channels each
    attention = 3 * 3 * shared * NUM_CLASSES + NUM_CLASSES
    proposal = shared * NUM_CLASSES + NUM_CLASSES
    classifier = NUM_CLASSES * shared * NUM_CLASSES + NUM_CLASSES
    expected = 2 * stream + attention + proposal + classifier
    assert expected == 21769
    assert num_params(create_model({"name": "fr"}, NUM_CLASSES, rngs=rngs())) == expected
    # readout="flatten": the classifier reads every cell of the 7 x 7 attended maps.
    flat = create_model({"name": "fr", "readout": "flatten"}, NUM_CLASSES, rngs=rngs())
    assert (
        num_params(flat)
        == expected - classifier + NUM_CLASSES * 49 * shared * NUM_CLASSES + NUM_CLASSES
    )
    batch, _ = make_batch()
    outputs = flat(flat.prepare(batch, prng_key(0), train=False), train=False)
    assert (
        outputs["logits"].shape
        == outputs["proposal_logits"].shape
        == (len(batch["flow"]), NUM_CLASSES)
    )
    with pytest.raises(UserError, match="readout"):
        create_model({"name": "fr", "readout": "max"}, NUM_CLASSES, rngs=rngs())


def test_model_settings_with_rules_are_validated_with_one_line_each():
    from configs import dere_grl, ststnet
    from mer_jax.train import validation

    config = ststnet.get_config()
    config.model.variant = "code"
    assert validation.problems(config) == [
        "model.variant='code': expected one of 'paper', 'released'."
    ]
    config = dere_grl.get_config()
    config.model.weight_rec = -1.0
    assert validation.problems(config) == ["model.weight_rec=-1.0: expected a finite number >= 0."]
    config.model.weight_rec = 0.0
    assert validation.problems(config) == []


# --- shared layers -------------------------------------------------------------------


def test_minmax_normalize_per_sample_and_channel():
    maps = np.random.default_rng(0).standard_normal((4, 6, 6, 3)) * [1.0, 10.0, 100.0]
    maps[1, ..., 2] = 5.0  # a flat channel must not produce NaN
    out = minmax_normalize(maps)
    np.testing.assert_allclose(out.min(axis=(1, 2)), 0.0, atol=1e-6)
    maxima = np.asarray(out.max(axis=(1, 2)))
    assert maxima[1, 2] == 0.0
    np.testing.assert_allclose(np.delete(maxima.ravel(), 1 * 3 + 2), 1.0, atol=1e-6)


def test_scale_normalize_keeps_direction_sign_and_the_still_parts():
    rng = np.random.default_rng(0)
    maps = rng.standard_normal((3, 6, 6, 3)) * [1.0, 3.0, 1.0]
    maps[..., 2] = np.abs(maps[..., 2])  # strain is a magnitude
    maps[0, :2, :2, :2] = 0.0  # a still patch stays still
    maps[2] = 0.0  # no motion at all: zeros, not NaN
    out = np.asarray(layers.scale_normalize(maps))
    magnitude = np.linalg.norm(out[..., :2], axis=-1)
    np.testing.assert_allclose(magnitude[:2].max(axis=(1, 2)), 1.0, rtol=1e-6)
    # One scale for u and v: every vector keeps its direction (and u:v ratio).
    np.testing.assert_allclose(
        out[:2, ..., 0] * maps[:2, ..., 1], out[:2, ..., 1] * maps[:2, ..., 0], atol=1e-6
    )
    assert (out[0, :2, :2, :2] == 0.0).all() and (out[2] == 0.0).all()
    np.testing.assert_allclose(out[:2, ..., 2].max(axis=(1, 2)), 1.0, rtol=1e-6)
    with pytest.raises(UserError, match="motion_norm"):
        STSTNet(5, motion_norm="zscore", rngs=nnx.Rngs(0))


def test_resize_flow_rescales_displacements():
    flow = jnp.ones((2, 14, 14, 2)).at[..., 1].set(-0.5)
    resized = resize_flow(flow, 28)
    assert resized.shape == (2, 28, 28, 2)
    # A uniform 1-pixel shift on the 14 grid is a 2-pixel shift on the 28 grid.
    np.testing.assert_allclose(resized[..., 0], 2.0, atol=1e-5)
    np.testing.assert_allclose(resized[..., 1], -1.0, atol=1e-5)
    np.testing.assert_array_equal(resize_flow(flow, 14), flow)  # same grid: untouched


def test_hflip_flow_mirrors_and_negates_u():
    maps = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 5, 3)))
    out = hflip_flow(maps, jnp.array([True, False]))
    np.testing.assert_array_equal(out[0, ..., 0], -maps[0, :, ::-1, 0])
    np.testing.assert_array_equal(out[0, ..., 1:], maps[0, :, ::-1, 1:])  # v, strain: mirrored
    np.testing.assert_array_equal(out[1], maps[1])


def test_cross_entropy_label_smoothing():
    logits = jnp.array([[2.0, 0.0, -1.0]])
    labels = jnp.array([0])
    log_p = jax.nn.log_softmax(logits[0])
    np.testing.assert_allclose(cross_entropy(logits, labels), -log_p[0], rtol=1e-6)
    smoothed = -(0.9 + 0.1 / 3) * log_p[0] - (0.1 / 3) * (log_p[1] + log_p[2])
    np.testing.assert_allclose(
        cross_entropy(logits, labels, label_smoothing=0.1), smoothed, rtol=1e-6
    )


# --- models --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_name", "size"),
    [("ststnet", 28), ("ststnet", 64), ("fr", 28), ("fr", 32), ("fr_strain_hidden", 64)],
)
def test_prepare_and_output_shapes(config_name, size):
    model = create_model(CONFIGS[config_name], NUM_CLASSES, rngs=rngs())
    batch, _ = make_batch(size)
    inputs = model.prepare(batch, prng_key(1), train=False)
    channels = 3 if config_name in ("ststnet", "fr_strain_hidden") else 2
    motion = inputs["motion"]
    assert motion.shape == (8, 28, 28, channels) and motion.dtype == jnp.float32
    np.testing.assert_allclose(motion.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(motion.max(axis=(1, 2)), 1.0, atol=1e-6)
    outputs = model(inputs, train=False)
    assert outputs["logits"].shape == (8, NUM_CLASSES)
    assert outputs["logits"].dtype == jnp.float32
    if isinstance(model, FR):
        assert outputs["proposal_logits"].shape == (8, NUM_CLASSES)
        assert outputs["attention"].shape == (8, 7, 7, NUM_CLASSES)


@pytest.mark.parametrize("model_class", [STSTNet, FR])
def test_prepare_hflip_only_in_training(model_class):
    model = model_class(NUM_CLASSES, hflip=True, rngs=rngs())
    batch, _ = make_batch(n=16)
    flip_key = prng_key(3)
    plain = model.prepare(batch, flip_key, train=False)["motion"]
    augmented = model.prepare(batch, flip_key, train=True)["motion"]
    # Min-max after the flip: a negated, mirrored u normalises to 1 - mirrored plain u.
    flipped = jnp.flip(plain, axis=2).at[..., 0].set(1.0 - jnp.flip(plain[..., 0], axis=2))
    is_plain = jnp.all(jnp.isclose(augmented, plain, atol=1e-5), axis=(1, 2, 3))
    is_flipped = jnp.all(jnp.isclose(augmented, flipped, atol=1e-5), axis=(1, 2, 3))
    assert bool(jnp.all(is_plain | is_flipped))
    assert bool(jnp.any(is_plain)) and bool(jnp.any(is_flipped))


def test_fields_are_the_flow_and_strain_features():
    assert STSTNet.fields == FR.fields == ("flow", "strain")


def test_fr_proposal_loss_weighting():
    batch, labels = make_batch()
    losses = {}
    for weight_prop in (0.0, 1.0):
        model = FR(NUM_CLASSES, weight_prop=weight_prop, rngs=rngs())
        outputs = model(model.prepare(batch, prng_key(0), train=False), train=False)
        losses[weight_prop] = model.loss(outputs, labels)
    (loss_off, terms_off), (loss_on, terms_on) = losses[0.0], losses[1.0]
    assert set(terms_on) == {"ce", "proposal"}
    np.testing.assert_allclose(loss_off, terms_off["ce"], rtol=1e-6)
    np.testing.assert_allclose(terms_on["ce"], terms_off["ce"], rtol=1e-6)
    np.testing.assert_allclose(loss_on, terms_on["ce"] + terms_on["proposal"], rtol=1e-6)
    assert loss_on > loss_off


@pytest.mark.parametrize("config_name", ["ststnet", "fr"])
def test_bfloat16_compute_matches_float32(config_name):
    batch, _ = make_batch()
    logits = {}
    for dtype in (jnp.float32, jnp.bfloat16):
        model = create_model(CONFIGS[config_name], NUM_CLASSES, rngs=rngs(), dtype=dtype)
        params = nnx.state(model, nnx.Param)
        assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
        inputs = model.prepare(batch, prng_key(0), train=False)
        logits[dtype] = model(inputs, train=False)["logits"]
    assert logits[jnp.bfloat16].dtype == jnp.float32
    scale = float(jnp.abs(logits[jnp.float32]).max())
    np.testing.assert_allclose(
        logits[jnp.bfloat16], logits[jnp.float32], atol=0.03 * max(scale, 1.0)
    )


@pytest.mark.parametrize("config_name", ["ststnet", "fr_strain_hidden"])
def test_functional_training_step_reduces_loss(config_name):
    model = create_model(CONFIGS[config_name], NUM_CLASSES, rngs=rngs())
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    batch, labels = make_batch(n=12)
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, rest, opt_state, key):
        prepare_key, dropout_key = jax.random.split(key)

        def loss_fn(params):
            # copy=True: without it the merged BatchStats belong to the jit trace, not this
            # grad trace, and BatchNorm's update raises TraceContextError (flax 0.12).
            model = nnx.merge(graphdef, params, rest, copy=True)
            inputs = model.prepare(batch, prepare_key, train=True)
            outputs = model(inputs, train=True, key=dropout_key)
            loss, terms = model.loss(outputs, labels)
            return loss, (terms, nnx.state(model, nnx.Not(nnx.Param)))

        (loss, (terms, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, loss, terms

    initial_rest = rest
    opt_state = tx.init(params)
    losses = []
    for key in jax.random.split(prng_key(1), 20):
        params, rest, opt_state, loss, terms = step(params, rest, opt_state, key)
        assert all(bool(jnp.isfinite(t)) for t in jax.tree.leaves(terms))
        losses.append(float(loss))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
    # FR's BatchNorm running statistics (mean and variance of 2 blocks x 3 streams) come
    # back updated through the non-param state; STSTNet has none.
    before, after = jax.tree.leaves(initial_rest), jax.tree.leaves(rest)
    assert len(after) == (12 if isinstance(model, FR) else 0)
    assert all(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("config_name", ["ststnet", "fr"])
def test_vmap_over_stacked_parameter_copies(config_name):
    config = CONFIGS[config_name]
    keys = jax.random.split(prng_key(0), 2)
    stacked = jax.vmap(lambda k: nnx.state(create_model(config, NUM_CLASSES, rngs=nnx.Rngs(k))))(
        keys
    )
    graphdef = nnx.graphdef(create_model(config, NUM_CLASSES, rngs=rngs()))
    batch, _ = make_batch()

    def logits(state):
        model = nnx.merge(graphdef, state)
        return model(model.prepare(batch, prng_key(0), train=False), train=False)["logits"]

    together = jax.vmap(logits)(stacked)
    for i in range(2):
        alone = logits(jax.tree.map(lambda a, i=i: a[i], stacked))
        np.testing.assert_allclose(together[i], alone, rtol=1e-5, atol=1e-5)
    assert not np.allclose(together[0], together[1])  # the copies are distinct inits


# --- registry ------------------------------------------------------------------------


def test_registry_builds_from_mapping_and_configdict():
    assert {"ststnet", "fr", "ltr3o"} <= set(MODELS)
    assert MODELS["ststnet"] is STSTNet and MODELS["fr"] is FR
    config = ml_collections.ConfigDict({"name": "fr", "weight_prop": 0.0, "use_strain": True})
    model = create_model(config, 5, rngs=rngs())
    assert isinstance(model, FR) and model.weight_prop == 0.0 and model.num_classes == 5


def test_registry_unknown_name_lists_known_models():
    with pytest.raises(UserError, match=r"'resnet'.*" + re.escape(str(sorted(MODELS)))):
        create_model({"name": "resnet"}, NUM_CLASSES, rngs=rngs())
    with pytest.raises(UserError, match="Unknown model.name None"):
        create_model({}, NUM_CLASSES, rngs=rngs())


def test_a_model_of_the_other_task_is_refused():
    assert MODELS["ma2mi"].TASK == "pretrain" and MODELS["fr"].TASK == "loso"
    with pytest.raises(UserError, match=r"'ma2mi' is a 'pretrain' model.*'loso' models are"):
        model_class({"name": "ma2mi"}, "loso")
    with pytest.raises(UserError, match=r"'fr' is a 'loso' model"):
        model_class({"name": "fr"}, "pretrain")


def test_registry_unknown_key_names_it_and_accepted_keys():
    with pytest.raises(UserError, match=r"\['lamda_prop'\].*'weight_prop'"):
        create_model({"name": "fr", "lamda_prop": 0.5}, NUM_CLASSES, rngs=rngs())
    with pytest.raises(UserError, match="'hflip'"):
        create_model({"name": "ststnet", "flip": True}, NUM_CLASSES, rngs=rngs())


@pytest.mark.parametrize(
    "window,stride,padding", [(3, 1, "SAME"), (3, 3, "SAME"), (2, 2, "VALID"), (3, 1, "VALID")]
)
def test_max_pool_matches_flax(window, stride, padding):
    x = jax.random.normal(jax.random.key(0), (2, 28, 28, 5))
    ours = max_pool(x, window, stride=stride, padding=padding)
    reference = nnx.max_pool(x, (window, window), strides=(stride, stride), padding=padding)
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize(
    "kernel,stride,padding,in_features",
    [(3, 1, "SAME", 3), (5, 1, "SAME", 1), (3, 2, "VALID", 3), (5, 1, "SAME", 8)],
)
def test_patch_conv_matches_xla_conv_and_its_gradients(kernel, stride, padding, in_features):
    """The CPU matmul convolution is the same function as XLA's, values and gradients.

    Narrow patches (up to 32 features) take the matmul path on the CPU, wide ones XLA's.
    """
    x = jax.random.normal(jax.random.key(0), (2, 14, 14, in_features))
    w = jax.random.normal(jax.random.key(1), (kernel, kernel, in_features, 4))
    dimension_numbers = ("NHWC", "HWIO", "NHWC")

    def ours(x, w):
        return layers.conv_general_dilated(
            x, w, (stride, stride), padding, dimension_numbers=dimension_numbers
        )

    def reference(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (stride, stride), padding, dimension_numbers=dimension_numbers
        )

    uses_xla_conv = "conv_general_dilated" in str(jax.make_jaxpr(ours)(x, w))
    assert uses_xla_conv == (kernel * kernel * in_features > 32)
    np.testing.assert_allclose(ours(x, w), reference(x, w), rtol=1e-5, atol=1e-5)
    grads = jax.grad(lambda x, w: (ours(x, w) ** 2).sum(), argnums=(0, 1))(x, w)
    expected = jax.grad(lambda x, w: (reference(x, w) ** 2).sum(), argnums=(0, 1))(x, w)
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)
