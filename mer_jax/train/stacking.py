"""The stacked replicas of a LOSO run: their layout on the devices and the pure functions
that train and evaluate them.

A replica is one (fold, seed) training run (`mer_jax.workdir.Replica`). Replicas are
stacked on a leading axis: parameters and optimizer states carry it, one `jax.vmap`-ed
step trains them all, each replica sampling batches only from its own training
subjects out of the dataset resident on the device, and `lax.scan` runs many steps per
dispatch. The replica axis is sharded over the `fold` axis of a device mesh and split
into chunks when the whole stack would not fit in device memory (`engine.LosoRun`).
"""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh

from mer_jax import models
from mer_jax.errors import UserError
from mer_jax.train import init_from, run
from mer_jax.workdir import Chunk, Replica, replica_probabilities

# ---------------------------------------------------------------------------
# Layout: mode, mesh, replicas and chunks.
# ---------------------------------------------------------------------------


def _resolve_auto(engine: ml_collections.ConfigDict, key: str, on_cpu: str, elsewhere: str) -> str:
    """engine.<key> as chosen, or for "auto" the choice for the backend in use."""
    choices = ("auto", on_cpu, elsewhere)
    value = engine[key]
    if value not in choices:
        raise UserError(f"Unknown engine.{key} {value!r}; use one of {sorted(set(choices))}.")
    if value == "auto":
        return on_cpu if jax.default_backend() == "cpu" else elsewhere
    return value


def resolve_mode(engine: ml_collections.ConfigDict) -> str:
    """Returns "stacked" or "sequential"; "auto" stacks on accelerators only, and always
    with several processes (one device cannot hold them all)."""
    if jax.process_count() > 1:
        if engine.mode == "sequential":
            raise UserError(
                f"engine.mode='sequential' trains on one device, but this run has "
                f"{jax.process_count()} processes; use stacked (or auto)."
            )
        return "stacked"
    return _resolve_auto(engine, "mode", on_cpu="sequential", elsewhere="stacked")


def resolve_loop(engine: ml_collections.ConfigDict) -> str:
    """Returns "scan" or "python"; "auto" avoids XLA:CPU's slow convs in while loops."""
    return _resolve_auto(engine, "loop", on_cpu="python", elsewhere="scan")


def make_mesh(mode: str, engine: ml_collections.ConfigDict) -> Mesh:
    """The run's devices on the `fold` axis when stacked; one device when sequential."""
    devices = run.run_devices(engine)
    return run.make_mesh(devices[:1] if mode == "sequential" else devices, "fold")



def plan_chunks(replicas: list[Replica], replicas_per_chunk: int, fold_devices: int) -> list[Chunk]:
    """Splits replicas into chunks of at most `replicas_per_chunk`, padded to the devices."""
    size = max(1, min(replicas_per_chunk, len(replicas)))
    chunks = []
    for index, start in enumerate(range(0, len(replicas), size)):
        members = tuple(replicas[start : start + size])
        padded = math.ceil(len(members) / fold_devices) * fold_devices
        chunks.append(Chunk(index, members, padded))
    return chunks


def compiled_bytes(compiled: Any) -> int | None:
    """A compiled step's device memory by XLA's own estimate: temporaries, arguments and
    outputs (None where the backend gives no analysis)."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return None
    return int(
        analysis.temp_size_in_bytes
        + analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
    )


def padded_indices(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, N) masks -> (F, max count) int32 sample indices (padded with 0) and counts."""
    counts = masks.sum(axis=1).astype(np.int32)
    indices = np.zeros((len(masks), max(int(counts.max()), 1)), np.int32)
    for f, mask in enumerate(masks):
        indices[f, : counts[f]] = np.flatnonzero(mask)
    return indices, counts


# ---------------------------------------------------------------------------
# The pure functions: init, a dispatch of training steps, prediction.
# ---------------------------------------------------------------------------


def draw_batch(
    key: jax.Array,
    labels: jax.Array,
    train_idx: jax.Array,
    n_train: jax.Array,
    *,
    batch_size: int,
    num_classes: int,
    sampling: str,
) -> jax.Array:
    """(batch_size,) sample indices drawn with replacement from the first `n_train` of
    `train_idx` (one replica's training clips: the test side is never gathered during
    training). `sampling` "uniform": every clip alike; "balanced": every class alike, a
    clip with probability inversely proportional to its class's count among them."""
    if sampling == "uniform":
        return train_idx[jax.random.randint(key, (batch_size,), 0, n_train)]
    present = jnp.arange(train_idx.shape[0]) < n_train
    classes = labels[train_idx]
    counts = jax.ops.segment_sum(present.astype(jnp.float32), classes, num_classes)
    weights = jnp.where(present, 1.0 / jnp.maximum(counts[classes], 1.0), 0.0)
    drawn = jax.random.choice(key, train_idx.shape[0], (batch_size,), p=weights / weights.sum())
    return train_idx[drawn]


@dataclasses.dataclass(frozen=True)
class Functions:
    """The jitted pure functions over stacked replicas, built once per run."""

    init: Callable[..., Any]  # not jitted here: jitted per chunk, onto that chunk's sharding
    train: Callable[..., Any]
    predict: Callable[..., Any]
    summarize: Callable[..., Any]


def build_functions(
    config: ml_collections.ConfigDict,
    model_config: dict[str, Any],
    num_classes: int,
    tx: optax.GradientTransformation,
    steps_per_call: int,
    branches: init_from.PretrainedBranches | None = None,
) -> tuple[Functions, models.MERModel]:
    """The jitted init/train/predict functions and an abstract model of the run's settings.

    `train` runs `steps_per_call` steps: the whole dispatch under `lax.scan`, or 1
    (called once per step) for the "python" loop. With `branches` (`config.init_from`),
    every replica starts from those pre-trained branches (the other layers from its own
    seed). `summarize` (for `figures.METHOD_FIGURES`) gives each replica's
    `MERModel.summaries` over a set of samples.
    """
    dtype = jnp.dtype(config.engine.compute_dtype)

    def create(key: jax.Array) -> models.MERModel:
        return models.create_model(model_config, num_classes, rngs=nnx.Rngs(key), dtype=dtype)

    # The graph (structure + static attributes) is the same for every replica;
    # only the state arrays are stacked.
    abstract_model = nnx.eval_shape(lambda: create(jax.random.key(0)))
    graphdef = nnx.split(abstract_model, nnx.Param, ...)[0]
    fields = tuple(abstract_model.fields)
    batch_size = config.train.batch_size
    update = run.make_update(graphdef, tx)

    def init_one(key: jax.Array) -> dict[str, Any]:
        _, params, rest = nnx.split(create(jax.random.fold_in(key, 0)), nnx.Param, ...)
        if branches is not None:
            init_from.apply(params, rest, branches)
        return {"params": params, "rest": rest, "opt_state": tx.init(params)}

    def train_step(state, step, data, train_idx, n_train, key):
        step_key = jax.random.fold_in(jax.random.fold_in(key, 1), step)
        sample_key, prepare_key, dropout_key = jax.random.split(step_key, 3)
        idx = draw_batch(
            sample_key,
            data["label"],
            train_idx,
            n_train,
            batch_size=batch_size,
            num_classes=num_classes,
            sampling=config.train.sampling,
        )
        batch = {name: data[name][idx] for name in fields}
        return update(state, batch, data["label"][idx], prepare_key, dropout_key)

    def train(state, data, train_idx, n_train, keys, start_step):
        def one_replica(state, train_idx, n_train, key):
            def body(state, step):
                return train_step(state, step, data, train_idx, n_train, key)

            if steps_per_call == 1:
                # No loop at all: a trip-count-1 scan would still be a while loop.
                state, metrics = body(state, start_step)
            else:
                steps = start_step + jnp.arange(steps_per_call)
                state, metrics = jax.lax.scan(body, state, steps)
            return state, jax.tree.map(lambda m: jnp.mean(m.astype(jnp.float32)), metrics)

        return jax.vmap(one_replica)(state, train_idx, n_train, keys)

    def predict(state, data, test_idx, keys):
        def one_replica(state, test_idx, key):
            batch = {name: data[name][test_idx] for name in fields}
            return replica_probabilities(graphdef, state["params"], state["rest"], batch, key)

        return jax.vmap(one_replica)(state, test_idx, keys)

    def summarize(state, data):
        def one_replica(state):
            model = nnx.merge(graphdef, state["params"], state["rest"])
            fields_only = {name: data[name] for name in fields}
            return model.summaries(model.prepare(fields_only, jax.random.key(0), train=False))

        return jax.vmap(one_replica)(state)

    functions = Functions(
        init=jax.vmap(init_one),
        train=jax.jit(train, donate_argnums=0),
        predict=jax.jit(predict),
        summarize=jax.jit(summarize),
    )
    return functions, abstract_model
