"""Tests of DeRe-GRL: the face graph, node features, the model, its AU loss and its figure."""

import functools
import json

import fixtures
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import dere_grl as dere_grl_config
from mer_jax.data.action_units import AU_LIST
from mer_jax.errors import UserError
from mer_jax.evaluate.figures import DERE_GRL_PNG
from mer_jax.models import create_model, graph
from mer_jax.models.dere_grl import au_loss

synthetic_data_dir = fixtures.synthetic_data_dir

NUM_CLASSES = 5
CROP = 128
FLOW = 28
# rbg keys: a threefry draw per parameter shape costs XLA ~1 s of compile on the CPU.
KEY_IMPL = "rbg"
ABLATIONS = {
    "full": {},
    "no_adm": {"use_adm": False},
    "no_rrm": {"use_rrm": False},
    "no_au": {"weight_au": 0.0},
    "no_rec": {"weight_rec": 0.0},
    "nodes": {"adm_pooling": "nodes"},
    # Every other branch at once (one compile): no ADM, no high-order stream, no learned
    # adjacency, the jaw component, no RRM, no AU head, no reconstruction decoder.
    "lean": {
        "use_adm": False,
        "use_high_order": False,
        "learnable_adjacency": False,
        "include_jaw": True,
        "use_rrm": False,
        "weight_au": 0.0,
        "weight_rec": 0.0,
    },
}


def key(seed=0):
    return jax.random.key(seed, impl=KEY_IMPL)


def model_for(name, **changes):
    config = {"name": "dere_grl", "crop_size": CROP, **ABLATIONS[name], **changes}
    return create_model(config, NUM_CLASSES, rngs=nnx.Rngs(key()))


def num_params(name):
    # Shapes only: initialising the parameters would cost seconds of compiles.
    model = nnx.eval_shape(lambda: model_for(name))
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def graphdef_of(name, **changes):
    """The model's graph (structure and static settings), from shapes only."""
    return nnx.split(nnx.eval_shape(lambda: model_for(name, **changes)), nnx.Param, ...)[0]


@functools.cache
def initial_state(name):
    """(params, rest) of a configuration, initialised once in one jit: every random draw
    compiles per parameter shape, seconds for this model, so tests share them."""
    return jax.jit(lambda: tuple(nnx.split(model_for(name), nnx.Param, ...)[1:]))()


@functools.cache
def _jitted_forward(name):
    graphdef = graphdef_of(name)

    @jax.jit
    def run(params, rest, batch, labels):
        model = nnx.merge(graphdef, params, rest)
        inputs = model.prepare(batch, key(1), train=False)
        outputs = model(inputs, train=False)
        loss, terms = model.loss(outputs, labels)
        return inputs, outputs, loss, terms

    return run


def forward(name, batch, labels):
    """prepare, __call__ and loss of the configuration's initial model, in one jit."""
    return _jitted_forward(name)(*initial_state(name), batch, labels)


def make_batch(n=6, seed=0):
    """Built-dataset-like fields: landmarks inside a 128 crop, smooth flow, AUs, labels.

    The apex moves a class-dependent group of landmarks (brows up, mouth corners out,
    nose up) by 2 px on top of a random head drift, and the flow carries a matching blob.
    """
    rng = np.random.default_rng(seed)
    onset = rng.uniform(30.0, 90.0, (n, 68, 2)).astype(np.float32)
    labels = np.arange(n) % NUM_CLASSES
    moved = [list(graph.RIGHT_BROW), [48, 54], list(graph.NOSE), [36, 45], [57]]
    apex = onset + rng.normal(0.0, 0.5, (n, 1, 2))  # head drift
    for i, label in enumerate(labels):
        apex[i, moved[label]] += np.array([0.0, -2.0])
    cells = (np.arange(FLOW) + 0.5) * CROP / FLOW
    blob = np.exp(-((cells[:, None] - 64) ** 2 + (cells[None, :] - 60) ** 2) / 400.0)
    flow = rng.normal(0.0, 0.1, (n, FLOW, FLOW, 2)) + 2.0 * blob[None, :, :, None]
    action_units = np.zeros((n, len(AU_LIST)), np.uint8)
    action_units[np.arange(n), labels] = 1
    batch = {
        "landmarks_onset": jnp.asarray(onset),
        "landmarks_apex": jnp.asarray(apex, jnp.float32),
        "flow": jnp.asarray(flow, jnp.float16),
        "action_units": jnp.asarray(action_units),
        "action_units_known": jnp.ones(n, jnp.uint8),
    }
    return batch, jnp.asarray(labels)


# --- the face graph -------------------------------------------------------------------


def test_component_partition_covers_the_intended_landmarks():
    parts = graph.components(include_jaw=False)
    assert {name: (r.start, r.stop) for name, r in parts.items()} == {
        "right brow": (17, 22),
        "left brow": (22, 27),
        "nose": (27, 36),
        "right eye": (36, 42),
        "left eye": (42, 48),
        "mouth": (48, 68),
    }
    covered = [i for r in parts.values() for i in r]
    assert sorted(covered) == list(range(17, 68))  # every non-jaw point exactly once
    with_jaw = [i for r in graph.components(include_jaw=True).values() for i in r]
    assert sorted(with_jaw) == list(range(68))
    # Mirroring the face swaps the paired components and keeps the others.
    mirror = {name: {int(graph.MIRROR[i]) for i in r} for name, r in parts.items()}
    assert mirror["right brow"] == set(parts["left brow"])
    assert mirror["left eye"] == set(parts["right eye"])
    assert mirror["mouth"] == set(parts["mouth"])


def test_anatomical_graph_is_connected_and_symmetric():
    adjacency = graph.anatomical_adjacency()
    np.testing.assert_array_equal(adjacency, adjacency.T)
    assert np.all(np.diag(adjacency) == 0)
    reach = np.linalg.matrix_power(adjacency + np.eye(68), 68) > 0
    assert reach.all()  # one connected face graph
    np.testing.assert_allclose(graph.neighbour_mean_matrix().sum(axis=1), 1.0, rtol=1e-6)


def test_node_features_are_invariant_to_a_global_translation():
    batch, _ = make_batch()
    onset, apex = batch["landmarks_onset"], batch["landmarks_apex"]
    flow = batch["flow"].astype(jnp.float32)
    node_features = jax.jit(functools.partial(graph.node_features, crop_size=CROP))
    features = node_features(onset, apex, flow)
    assert features["low"].shape == (6, 68, 7) and features["high"].shape == (6, 68, 6)

    # The whole face moved by 2 flow cells: landmarks shift and the flow map content with
    # them (the landmarks stay clear of the border, where rolled content wraps).
    shift = jnp.asarray([2 * CROP / FLOW, -1 * CROP / FLOW])
    rolled = jnp.roll(flow, shift=(-1, 2), axis=(1, 2))
    moved = node_features(onset + shift, apex + shift, rolled)
    for name in ("low", "high"):
        np.testing.assert_allclose(moved[name], features[name], atol=2e-4, err_msg=name)

    # Head drift between onset and apex: every apex point and the flow shifted alike.
    drift = jnp.asarray([1.3, -0.7])
    drifted = node_features(onset, apex + drift, flow + drift)
    for name in ("low", "high"):
        np.testing.assert_allclose(drifted[name], features[name], atol=2e-4, err_msg=name)

    # A local movement is not invariant: one mouth corner moving changes its features.
    local = node_features(onset, apex.at[:, 48, 0].add(1.0), flow)
    assert not np.allclose(local["low"][:, 48], features["low"][:, 48], atol=1e-2)


def test_hflip_landmarks_is_an_involution_and_renumbers_sides():
    batch, _ = make_batch()
    onset = batch["landmarks_onset"]
    flip = jnp.array([True, False, True, True, False, True])
    once = graph.hflip_landmarks(onset, CROP, flip)
    np.testing.assert_allclose(graph.hflip_landmarks(once, CROP, flip), onset, atol=1e-4)
    # The flipped right-eye corner 36 is the mirrored image of the left-eye corner 45.
    np.testing.assert_allclose(once[0, 36], [CROP - 1 - onset[0, 45, 0], onset[0, 45, 1]])
    np.testing.assert_array_equal(once[1], onset[1])


# --- the model -------------------------------------------------------------------------


def test_default_parameter_count():
    hidden, actions, action_dims, groups, aus = 32, 4, 16, 6, len(AU_LIST)
    flat = groups * actions * action_dims
    low = (7 * hidden + hidden) + (hidden * hidden + hidden)
    high = (6 * hidden + hidden) + (hidden * hidden + hidden)
    adjacency = 68 * 8
    fuse = 2 * hidden * hidden + hidden
    adm = groups * (2 * hidden * actions * action_dims + actions * action_dims)
    rrm = (flat * groups * actions + groups * actions) + (16 * 16 + 16) + 16 * 16
    classifier = (action_dims + 16) * NUM_CLASSES + NUM_CLASSES
    au_head = flat * aus + aus
    decoder = actions * action_dims * 2 * hidden + 2 * hidden  # shared by the components
    expected = low + high + adjacency + fuse + adm + rrm + classifier + au_head + decoder
    assert expected == 47809 + 4160
    assert num_params("full") == expected
    # The no-ADM map has the same size: one matrix from the whole face to all actions.
    assert num_params("no_adm") == expected
    assert num_params("no_au") == expected - au_head
    assert num_params("no_rec") == expected - decoder
    # adm_pooling="nodes": each map reads its component's nodes, padded to the mouth's 20.
    adm_nodes = groups * (20 * hidden * actions * action_dims + actions * action_dims)
    assert num_params("nodes") == expected - adm + adm_nodes
    no_rrm_classifier = flat * NUM_CLASSES + NUM_CLASSES
    assert num_params("no_rrm") == expected - rrm - classifier + no_rrm_classifier


@pytest.mark.parametrize("name", ["full", "lean"])
def test_output_shapes(name):
    batch, labels = make_batch()
    _, outputs, loss, terms = forward(name, batch, labels)
    groups = 7 if name == "lean" else 6
    assert outputs["logits"].shape == (6, NUM_CLASSES)
    assert outputs["logits"].dtype == jnp.float32
    assert outputs["actions"].shape == (6, groups * 4, 16)
    if name == "lean":
        assert "rrm_weights" not in outputs
    else:
        np.testing.assert_allclose(outputs["rrm_weights"].sum(-1), 1.0, rtol=1e-5)
    assert ("au_logits" in outputs) == (name != "lean")
    if name == "full":
        assert outputs["reconstruction"].shape == outputs["sub_features"].shape == (6, 6, 64)
    assert np.isfinite(loss) and set(terms) == ({"ce"} if name == "lean" else {"ce", "au", "rec"})


def test_reconstruction_loss_falls_and_is_absent_at_weight_zero():
    batch, labels = make_batch()
    tx = optax.adam(1e-3)  # the config's learning rate

    def trained(name, steps):
        graphdef = graphdef_of(name)

        @jax.jit
        def step(params, rest, opt_state):
            def loss_fn(params):
                model = nnx.merge(graphdef, params, rest)
                inputs = model.prepare(batch, key(2), train=True)
                return model.loss(model(inputs, train=True, key=key(3)), labels)

            (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, terms

        params, rest = initial_state(name)
        opt_state = tx.init(params)
        history = []
        for _ in range(steps):
            params, opt_state, loss, terms = step(params, rest, opt_state)
            history.append((float(loss), {k: float(v) for k, v in terms.items()}))
        return history

    full = trained("full", 40)
    first, last = full[0][1]["rec"], full[-1][1]["rec"]
    assert last < 0.75 * first, (first, last)
    # weight_rec = 0: no decoder parameters, no term, the loss exactly CE + weight_au * AU.
    params, _ = initial_state("no_rec")
    assert "decoder" not in params
    _, outputs, loss, terms = forward("no_rec", batch, labels)
    assert set(terms) == {"ce", "au"} and "reconstruction" not in outputs
    assert loss == terms["ce"] + 0.5 * terms["au"]


def test_one_training_step_reaches_every_parameter():
    # Dropout and flips change no parameter: the shared initial state fits this graph.
    graphdef = graphdef_of("full", dropout=0.25, hflip=True)
    params, rest = initial_state("full")
    batch, labels = make_batch()
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state):
        def loss_fn(params):
            model = nnx.merge(graphdef, params, rest)
            inputs = model.prepare(batch, key(2), train=True)
            return model.loss(model(inputs, train=True, key=key(3)), labels)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    opt_state = tx.init(params)
    new_params, opt_state, first_loss, grads = step(params, opt_state)
    for path, grad in jax.tree_util.tree_leaves_with_path(grads):
        assert np.abs(np.asarray(grad)).max() > 0, jax.tree_util.keystr(path)
    for _ in range(20):
        new_params, opt_state, loss, _ = step(new_params, opt_state)
    assert np.isfinite(loss) and loss < first_loss


def test_au_loss_is_masked_when_there_are_no_au_labels():
    au_loss_jit = jax.jit(au_loss)  # one compile instead of one per eager op
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(size=(4, len(AU_LIST))), jnp.float32)
    targets = jnp.asarray(rng.integers(0, 2, (4, len(AU_LIST))), jnp.float32)
    assert au_loss_jit(logits, targets, jnp.zeros(4)) == 0.0
    # Samples without AU labels do not count, whatever their logits.
    mask = jnp.array([1.0, 1.0, 0.0, 0.0])
    changed = logits.at[2:].set(50.0)
    np.testing.assert_allclose(
        au_loss_jit(changed, targets, mask), au_loss_jit(logits, targets, mask)
    )
    np.testing.assert_allclose(
        au_loss_jit(logits, targets, mask),
        au_loss_jit(logits[:2], targets[:2], jnp.ones(2)),
        rtol=1e-6,
    )
    grad = jax.jit(jax.grad(au_loss))(logits, targets, mask)
    assert np.all(grad[2:] == 0) and np.any(grad[:2] != 0)

    # A dataset without AU coding (all-zero AU vectors): the model's loss is the CE alone,
    # and the AU fields never reach the logits.
    batch, labels = make_batch()
    unlabelled = {**batch, "action_units": jnp.zeros_like(batch["action_units"])}
    inputs, outputs, loss, terms = forward("full", unlabelled, labels)
    assert np.all(inputs["au_mask"] == 0)
    assert terms["au"] == 0.0 and loss == terms["ce"] + 0.5 * terms["rec"]
    labelled_inputs, labelled, _, labelled_terms = forward("full", batch, labels)
    assert np.all(labelled_inputs["au_mask"] == 1) and labelled_terms["au"] > 0
    np.testing.assert_array_equal(labelled["logits"], outputs["logits"])
    # AU cells the build could not read: their vectors are never targets, even non-zero.
    unknown = {**batch, "action_units_known": jnp.asarray([1, 1, 0, 0, 1, 0], jnp.uint8)}
    unknown_inputs, _, _, unknown_terms = forward("full", unknown, labels)
    np.testing.assert_array_equal(unknown_inputs["au_mask"], [1, 1, 0, 0, 1, 0])
    assert unknown_terms["au"] != labelled_terms["au"]


# --- in the engine ----------------------------------------------------------------------


def test_loso_run_trains_and_draws_the_weights_figure(synthetic_data_dir, tmp_path):
    config = dere_grl_config.get_config()
    changes = {
        **fixtures.settings(synthetic_data_dir),
        "seeds": (0,),
        "train.steps": 20,
        "train.checkpoint_every": 20,
        "engine.mode": "sequential",
        # A lighter graph (compile time is most of this test); RRM and the learned
        # adjacency, which the figure draws, stay on.
        "model.num_layers": 1,
        "model.use_high_order": False,
        "model.weight_au": 0.0,
        "model.hflip": False,
    }
    for dotted, value in changes.items():
        *path, name = dotted.split(".")
        holder = config
        for part in path:
            holder = holder[part]
        holder[name] = value
    workdir = tmp_path / "dere_grl"
    run = fixtures.make_run(config, workdir)
    # The crop size the landmarks are measured in comes from the build, not the config.
    assert run.model_config["crop_size"] == fixtures.OVERRIDES["crop_size"]
    metrics = run.train()
    assert 0.0 <= metrics["uf1"] <= 1.0
    figure = workdir / DERE_GRL_PNG
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((workdir / "metrics.json").read_text())["n_folds"] == fixtures.NUM_SUBJECTS


def test_a_crop_size_that_disagrees_with_the_build_is_an_error(synthetic_data_dir, tmp_path):
    config = dere_grl_config.get_config()
    for dotted, value in {**fixtures.settings(synthetic_data_dir), "model.crop_size": 128}.items():
        *path, name = dotted.split(".")
        holder = config
        for part in path:
            holder = holder[part]
        holder[name] = value
    with pytest.raises(UserError, match=r"model.crop_size=128, but the dataset was built with"):
        fixtures.make_run(config, tmp_path)


def test_adm_nodes_pooling_sees_which_landmark_of_a_component_moved():
    # Two mouth landmarks' features swapped: [mean, max] cannot tell, the nodes can.
    nodes = jax.random.normal(key(4), (1, 68, 32))
    swapped = nodes.at[:, [48, 54]].set(nodes[:, [54, 48]])
    for name, same in (("full", True), ("nodes", False)):
        model = nnx.merge(graphdef_of(name), *initial_state(name))
        spans = model.component_ranges
        actions = [
            np.asarray(model._actions(x, model._sub_features(x, spans))) for x in (nodes, swapped)
        ]
        assert np.allclose(*actions, atol=1e-6) == same, name
    with pytest.raises(UserError, match="adm_pooling"):
        model_for("full", adm_pooling="max")
