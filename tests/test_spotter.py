"""The learned spotter's network: shapes, parameter count, one training step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mer_jax.errors import UserError
from mer_jax.models import MODELS, create_model, with_build_settings
from mer_jax.train import run


def _model(**settings):
    config = with_build_settings({"name": "spotter", **settings}, {"grid": 4, "window": 5})
    return create_model(config, 3, rngs=nnx.Rngs(0))


def test_registered_for_spotting_with_the_window_read_from_the_build():
    assert MODELS["spotter"].TASK == "spotting"
    model = _model()
    assert (model.grid, model.window) == (4, 5)


def test_shapes_and_parameter_count():
    model = _model(frame_features=6, hidden_features=10)
    motion = np.arange(7 * 5 * 32, dtype=np.float16).reshape(7, 5, 4, 4, 2)
    inputs = model.prepare({"motion": jnp.asarray(motion)}, jax.random.key(0), train=False)
    # The windows come normalised (`normalised_motion`): each frame's cells, flattened.
    assert inputs["motion"].shape == (7, 5, 32) and inputs["motion"].dtype == jnp.float32
    np.testing.assert_array_equal(inputs["motion"], motion.reshape(7, 5, 32))
    logits = model(inputs, train=False)["logits"]
    assert logits.shape == (7, 3) and logits.dtype == jnp.float32
    params = nnx.state(model, nnx.Param)
    count = sum(x.size for x in jax.tree.leaves(params))
    # embed 32 -> 6, hidden 5 x 6 -> 10, classifier 10 -> 3 (weights and biases)
    assert count == (32 * 6 + 6) + (30 * 10 + 10) + (10 * 3 + 3)


def test_one_training_step_lowers_the_loss():
    model = _model(dropout=0.0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-2)
    state = {"params": params, "rest": rest, "opt_state": tx.init(params)}
    update = jax.jit(run.make_update(graphdef, tx))
    rng = np.random.default_rng(0)
    motion = rng.normal(size=(16, 5, 4, 4, 2)).astype(np.float16)
    batch = {"motion": jnp.asarray(motion)}
    labels = jnp.asarray(rng.integers(0, 3, 16))
    keys = jax.random.split(jax.random.key(1), 2)
    losses = []
    for _ in range(3):
        state, metrics = update(state, batch, labels, keys[0], keys[1])
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_class_weights_weigh_each_window_by_its_class():
    model = _model(class_weights=(1.0, 3.0, 1.0))
    logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = jnp.array([0, 1])
    per_window = -jax.nn.log_softmax(logits)[jnp.arange(2), labels]
    loss, _ = model.loss({"logits": logits}, labels)
    np.testing.assert_allclose(loss, (per_window[0] + 3 * per_window[1]) / 4, rtol=1e-6)
    with pytest.raises(UserError, match="model.class_weights"):
        _model(class_weights=(1.0, 2.0))
