"""LTR3O: candidate sampling, the ranking and calibration losses, the ablation weights,
shapes and a training step, and the main config end to end on the tiny database."""

import json

import fixtures
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mer_jax.errors import UserError
from mer_jax.models import create_model
from mer_jax.models.ltr3o import candidate_positions, ranking_loss

synthetic_data_dir = fixtures.synthetic_data_dir

NUM_CLASSES = 5
BATCH, T, S = 6, 16, 28
SMALL = {"name": "ltr3o", "num_candidates": 4, "input_size": 14, "encoder_features": (4, 8)}


def fake_batch(seed: int = 0) -> dict[str, jax.Array]:
    """Stored frames of clips of different lengths; motion grows towards the middle."""
    rng = np.random.default_rng(seed)
    lengths = [40, 12, 5, 16, 60, 3]
    frame_indices = np.stack(
        [np.round(np.linspace(100, 100 + n - 1, T)).astype(np.int32) for n in lengths]
    )
    ramp = np.sin(np.linspace(0, np.pi, T))[None, :, None, None, None]
    flow = rng.normal(size=(BATCH, T, S, S, 2)) * 0.2 + ramp
    strain = np.abs(rng.normal(size=(BATCH, T, S, S, 1)))
    return {
        "frame_indices": jnp.asarray(frame_indices),
        "flow_onset_to_t": jnp.asarray(flow, jnp.float16),
        "flow_t_to_offset": jnp.asarray(-flow, jnp.float16),
        "strain_onset_to_t": jnp.asarray(strain, jnp.float16),
        "strain_t_to_offset": jnp.asarray(strain, jnp.float16),
    }


def model_with(**changes: object) -> nnx.Module:
    return create_model({**SMALL, **changes}, NUM_CLASSES, rngs=nnx.Rngs(0))


def test_candidates_are_interior_and_deterministic_at_evaluation():
    frame_indices = fake_batch()["frame_indices"]
    onset, offset = frame_indices[:, :1], frame_indices[:, -1:]
    for seed in range(20):
        position = candidate_positions(
            frame_indices, jax.random.key(seed), num_candidates=6, train=True
        )
        frames = np.take_along_axis(np.asarray(frame_indices), np.asarray(position), axis=1)
        has_interior = np.asarray(((frame_indices > onset) & (frame_indices < offset)).any(1))
        assert ((frames > onset) & (frames < offset))[has_interior].all()
        assert (np.diff(np.asarray(position), axis=1) >= 0).all()
    # A 3-frame clip stored as 16 frames still has its one interior frame.
    assert has_interior[5]
    first = candidate_positions(frame_indices, jax.random.key(0), num_candidates=6, train=False)
    again = candidate_positions(frame_indices, jax.random.key(1), num_candidates=6, train=False)
    np.testing.assert_array_equal(first, again)
    # Evenly spaced over the 14 interior positions of a long clip.
    np.testing.assert_array_equal(first[0], [2, 4, 6, 9, 11, 13])


def test_ranking_loss_is_zero_when_ordered_and_positive_when_reversed():
    prior = jnp.array([[0.1, 0.5, 1.0, 2.0]])
    ordered = jnp.array([[0.0, 1.0, 2.0, 3.0]])
    kwargs = {"prior_margin": 0.1, "rank_margin": 1.0}
    assert float(ranking_loss(ordered, prior, **kwargs)) == 0.0
    assert float(ranking_loss(ordered[:, ::-1], prior, **kwargs)) > 1.0
    # Pairs too close to call are not ranked: equal priors cost nothing whatever the scores.
    assert float(ranking_loss(ordered[:, ::-1], jnp.ones((1, 4)), **kwargs)) == 0.0


def test_shapes_parameter_count_and_outputs():
    model = model_with()
    params = nnx.state(model, nnx.Param)
    # conv 3x3 4->4, 4->8 (no bias) + 2 BatchNorm scales/biases + scorer 8->32->1
    # + classifier 8->5.
    expected = 9 * 4 * 4 + 9 * 4 * 8 + 2 * (4 + 8) + (8 * 32 + 32) + (32 + 1) + (8 * 5 + 5)
    assert sum(x.size for x in jax.tree.leaves(params)) == expected
    inputs = model.prepare(fake_batch(), jax.random.key(0), train=True)
    assert inputs["motion"].shape == (BATCH, 4, 14, 14, 4)
    assert float(inputs["motion"].min()) >= 0.0 and float(inputs["motion"].max()) <= 1.0
    outputs = model(inputs, train=False)
    assert outputs["logits"].shape == (BATCH, NUM_CLASSES)
    assert outputs["candidate_logits"].shape == (BATCH, 4, NUM_CLASSES)
    np.testing.assert_allclose(outputs["weights"].sum(-1), 1.0, rtol=1e-5)
    # The motion prior follows the stored ramp: the middle candidates move most.
    assert (inputs["prior"][:, 1:3].mean(1) > inputs["prior"][:, [0, 3]].mean(1)).all()
    strain_model = model_with(use_strain=True)
    assert (
        strain_model.prepare(fake_batch(), jax.random.key(0), train=False)["motion"].shape[-1] == 6
    )


def test_same_pooling_keeps_every_row_and_flatten_keeps_where():
    # The config's three stages, 14 -> 7 -> 3 -> 1 with VALID pooling: the bottom rows
    # (mouth, chin) reach the feature only through the convolutions' edges.
    stages = {"encoder_features": (8, 16, 32)}
    batch = model_with().prepare(fake_batch(), jax.random.key(0), train=False)
    motion = batch["motion"][:, 0]

    def row_sensitivity(model: nnx.Module) -> np.ndarray:
        def total(x):
            return model.encoder(x, train=False).sum()

        rows = np.abs(np.asarray(jax.grad(total)(motion))).sum(axis=(0, 2, 3))
        return rows / rows.max()

    assert row_sensitivity(model_with(**stages))[-2:].max() < 0.4
    assert row_sensitivity(model_with(**stages, pool_padding="SAME"))[-2:].min() > 0.5
    flat = model_with(pool_padding="SAME", readout="flatten")
    # 14 -> 7 -> 4: the classifier reads 4 x 4 x 8 features.
    assert flat.classifier.in_features == 4 * 4 * 8
    assert flat(flat.prepare(fake_batch(), jax.random.key(0), train=False), train=False)[
        "logits"
    ].shape == (BATCH, NUM_CLASSES)
    with pytest.raises(UserError, match="pool_padding"):
        model_with(pool_padding="FULL")
    with pytest.raises(UserError, match="too small"):
        model_with(input_size=2, encoder_features=(4, 8))


def test_each_weight_at_zero_removes_its_term():
    labels = jnp.array([0, 1, 2, 3, 4, 0])
    batch = fake_batch()

    def loss_of(**changes: object) -> tuple[float, dict[str, float]]:
        model = model_with(**changes)
        inputs = model.prepare(batch, jax.random.key(0), train=False)
        total, terms = model.loss(model(inputs, train=False), labels)
        return float(total), {k: float(v) for k, v in terms.items()}

    total, terms = loss_of()
    assert all(terms[name] > 0 for name in ("ce", "aux", "cal"))
    weights = {"weight_aux": "aux", "weight_rank": "rank", "weight_cal": "cal"}
    defaults = {"weight_aux": 0.5, "weight_rank": 1.0, "weight_cal": 0.5}
    for weight, term in weights.items():
        without, _ = loss_of(**{weight: 0.0})
        np.testing.assert_allclose(without, total - defaults[weight] * terms[term], rtol=1e-5)
    single, single_terms = loss_of(num_candidates=1)
    assert single_terms["rank"] == 0.0 and single_terms["cal"] == 0.0


def test_one_training_step_lowers_the_loss():
    model = model_with()
    labels = jnp.array([0, 1, 2, 3, 4, 0])
    batch = fake_batch()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    def loss_fn(params):
        merged = nnx.merge(graphdef, params, rest, copy=True)
        inputs = merged.prepare(batch, jax.random.key(0), train=False)
        return merged.loss(merged(inputs, train=False), labels)[0]

    before, grads = jax.value_and_grad(loss_fn)(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    for _ in range(5):
        updates, opt_state = tx.update(jax.grad(loss_fn)(params), opt_state, params)
        params = optax.apply_updates(params, updates)
    assert float(loss_fn(params)) < float(before)


def test_main_config_runs_end_to_end(synthetic_data_dir, tmp_path):
    config_file = fixtures.write_config_file(
        tmp_path / "ltr3o_tiny.py",
        synthetic_data_dir,
        {"seeds": (0,), "model.encoder_features": (4, 8)},
        base="ltr3o",
    )
    workdir = tmp_path / "run"
    result = fixtures.launch(f"--config={config_file}", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert 0.0 <= metrics["uf1"] <= 1.0 and metrics["n_samples"] > 0
    assert "UF1" in result.stdout and str(workdir) in result.stdout
    history = (workdir / "predictions.csv").read_text().splitlines()
    assert len(history) == metrics["n_samples"] + 1


@pytest.mark.parametrize("num_candidates", [0, -1])
def test_no_candidates_is_an_error(num_candidates):
    with pytest.raises(ValueError, match="num_candidates"):
        model_with(num_candidates=num_candidates)
