"""The LOSO engine: every fold of a protocol, under every seed, trained at once.

A MER dataset is a few hundred clips and LOSO means 16-68 trainings of a small
model, so one model at a time leaves an accelerator idle. Here a *replica* is
one (fold, seed) training run. Replicas are stacked on a leading axis:
parameters and optimizer states carry it, one `jax.vmap`-ed step trains them
all, each replica sampling batches only from its own training subjects out of
the dataset resident on the device, and `lax.scan` runs many steps per
dispatch. The replica axis is sharded over the `fold` axis of a device mesh and
split into chunks when the whole stack would not fit in device memory.

`engine.mode` chooses the layout: "stacked" (all replicas at once, chunked if
needed), "sequential" (one replica at a time, on one device: the comparison
baseline, and faster on a CPU, which is already compute-bound) or "auto"
(stacked on GPU/TPU, sequential on CPU). Every replica's randomness derives
from (seed, fold, step) alone, so both layouts train the same models.

`engine.loop` chooses how the steps of one dispatch run: "scan" (`lax.scan`, one
device program per dispatch) or "python" (one jitted step per call, queued
asynchronously and synchronised once per dispatch). XLA:CPU runs convolutions inside
a while loop several times slower than outside one (jax-ml/jax#12868; the README gives
the measurement), so "auto" uses "python" on a CPU.

Stages of a run, in order: plan the replicas and chunks; per chunk, initialise
or resume from its checkpoint, train (`run.TrainingRun.train_loop`), save, and predict
its test subjects once; pool all out-of-fold predictions into the workdir's reports.
The dataset arrives loaded (`data_builders.load`, called by launch.py).
"""

import dataclasses
import json
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mer_jax import models
from mer_jax.data import loso
from mer_jax.data.dataset import MERDataset, put_on_device
from mer_jax.errors import UserError
from mer_jax.evaluate import figures, report
from mer_jax.train import checkpoint, init_from, optim, run

# What predicting on a new clip needs to know of the build, kept in the workdir so that
# `mer_jax.predict` works without the data cache: the preprocessing settings and classes.
DATASET_JSON = "dataset.json"


@dataclasses.dataclass(frozen=True)
class Replica:
    """One training run: LOSO fold `fold` under random seed `seed`."""

    fold: int
    seed: int


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Replicas trained together; padded (with repeats) to fill the fold devices."""

    index: int
    replicas: tuple[Replica, ...]
    padded_size: int

    @property
    def rows(self) -> list[Replica]:
        """The replica of every stacked row, padding rows repeating the last replica."""
        pad = self.padded_size - len(self.replicas)
        return list(self.replicas) + [self.replicas[-1]] * pad

    @property
    def name(self) -> str:
        return f"chunk_{self.index:03d}"


@dataclasses.dataclass
class LosoStats(run.RunStats):
    """Where the time and memory of a LOSO run went (written to timing.json)."""

    mode: str = ""
    loop: str = ""
    num_replicas: int = 0
    num_chunks: int = 0
    replicas_per_chunk: int = 0
    peak_device_bytes: int | None = None
    compiled_bytes_per_device: int | None = None


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
    """Returns "stacked" or "sequential"; "auto" stacks on accelerators only."""
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


def _padded_indices(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, N) masks -> (F, max count) int32 sample indices (padded with 0) and counts."""
    counts = masks.sum(axis=1).astype(np.int32)
    indices = np.zeros((len(masks), max(int(counts.max()), 1)), np.int32)
    for f, mask in enumerate(masks):
        indices[f, : counts[f]] = np.flatnonzero(mask)
    return indices, counts


# ---------------------------------------------------------------------------
# The pure functions: init, a dispatch of training steps, prediction.
# ---------------------------------------------------------------------------


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
        # Sampling only among this replica's training subjects: the test side is
        # never gathered during training.
        idx = train_idx[jax.random.randint(sample_key, (batch_size,), 0, n_train)]
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
            model = nnx.merge(graphdef, state["params"], state["rest"])
            batch = {name: data[name][test_idx] for name in fields}
            inputs = model.prepare(batch, jax.random.fold_in(key, 2), train=False)
            logits = model(inputs, train=False)["logits"]
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

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


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


class LosoRun(run.TrainingRun):
    """One configured LOSO experiment over all folds and seeds, in one workdir."""

    TASK = "loso"

    def __init__(
        self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path, dataset: MERDataset
    ):
        super().__init__(config, workdir)
        self.mode = resolve_mode(config.engine)
        self.loop = resolve_loop(config.engine)
        per_dispatch = config.engine.steps_per_dispatch
        self.steps_per_call = per_dispatch if self.loop == "scan" else 1
        self.mesh = make_mesh(self.mode, config.engine)
        self.fold_devices = self.mesh.shape["fold"]

        self.dataset = dataset
        self.folds = loso.make_folds(
            config.data.split,
            subjects=self.dataset["subject"],
            datasets=self.dataset["dataset"],
        )
        loso.assert_leak_free(self.folds, self.dataset["subject"])
        self.seeds = tuple(int(s) for s in config.seeds)
        if not self.seeds:
            raise UserError("config.seeds is empty; give at least one seed, e.g. (0,).")
        self.replicas = [Replica(f, s) for s in self.seeds for f in range(self.folds.num_folds)]

        models.model_class(config.model, self.TASK)
        self.model_config = models.with_build_settings(config.model, dataset.metadata)
        branches = None
        if config.get("init_from"):
            branches = init_from.prepare(config.init_from, config.model, dataset["subject"])
        self.tx = optim.make_optimizer(config.train, branches.names if branches else ())
        self.functions, self.abstract_model = build_functions(
            config,
            self.model_config,
            len(dataset.class_names),
            self.tx,
            self.steps_per_call,
            branches,
        )
        self.data = put_on_device(dataset, self.abstract_model.fields, self.mesh)
        # Summaries of every trained replica (chunk by chunk, real rows only) for the
        # method's figure, if it has one.
        self.figure = figures.METHOD_FIGURES.get(config.model.name)
        self.summaries: list[dict[str, np.ndarray]] = []
        self.train_idx, self.n_train = _padded_indices(self.folds.train_mask)
        self.test_idx, self.n_test = _padded_indices(self.folds.test_mask)

        self.stacked = NamedSharding(self.mesh, PartitionSpec("fold"))
        self.stats = LosoStats(
            backend=jax.default_backend(),
            device_kind=jax.devices()[0].device_kind,
            num_devices=self.mesh.size,
            mode=self.mode,
            loop=self.loop,
            num_replicas=len(self.replicas),
        )

    # -- chunk layout -------------------------------------------------------

    def _replicas_per_chunk(self) -> int:
        if self.mode == "sequential":
            return 1
        if self.config.engine.replicas_per_chunk > 0:
            return self.config.engine.replicas_per_chunk
        return self._replicas_that_fit()

    def _replicas_that_fit(self) -> int:
        """How many replicas fit in device memory, from the compiled step's own estimate.

        Backends that report no memory limit (the CPU) get every replica at once.
        """
        memory = self.mesh.devices.flat[0].memory_stats() or {}
        if "bytes_limit" not in memory:
            return len(self.replicas)
        probe = Chunk(0, tuple(self.replicas[: self.fold_devices]), self.fold_devices)
        analysis = self._compile_train(probe)[0].memory_analysis()
        data_bytes = sum(x.nbytes for x in jax.tree.leaves(self.data))
        per_replica = max(
            analysis.temp_size_in_bytes
            + analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            - data_bytes,
            1,
        )
        budget = 0.7 * (memory["bytes_limit"] - memory.get("bytes_in_use", 0))
        per_device = max(1, int(budget // per_replica))
        return per_device * self.fold_devices

    def chunks(self) -> list[Chunk]:
        return plan_chunks(self.replicas, self._replicas_per_chunk(), self.fold_devices)

    # -- per-chunk device arrays ---------------------------------------------

    def _sharding(self, chunk: Chunk) -> NamedSharding:
        """Rows split over the fold devices; replicated for a checkpoint stored for another
        device count whose stack does not divide evenly here (evaluation only)."""
        if chunk.padded_size % self.fold_devices:
            return NamedSharding(self.mesh, PartitionSpec())
        return self.stacked

    def _chunk_arrays(self, chunk: Chunk) -> dict[str, jax.Array]:
        rows = chunk.rows
        folds = np.array([r.fold for r in rows])
        keys = jnp.stack([jax.random.fold_in(jax.random.key(r.seed), r.fold) for r in rows])
        host = {
            "train_idx": self.train_idx[folds],
            "n_train": self.n_train[folds],
            "test_idx": self.test_idx[folds],
        }
        sharding = self._sharding(chunk)
        arrays = jax.device_put(host, sharding)
        arrays["keys"] = jax.device_put(keys, sharding)
        return arrays

    def _abstract_state(self, arrays: dict[str, jax.Array]) -> Any:
        """The state's shapes, placed like the chunk's keys: the checkpoint restore target."""
        shapes = jax.eval_shape(self.functions.init, arrays["keys"])
        return checkpoint.abstract_like(shapes, arrays["keys"].sharding)

    def _compile_train(self, chunk: Chunk) -> tuple[Any, float]:
        arrays = self._chunk_arrays(chunk)
        state = self._abstract_state(arrays)
        start = jax.ShapeDtypeStruct((), jnp.int32)
        tic = time.perf_counter()
        compiled = self.functions.train.lower(
            state, self.data, arrays["train_idx"], arrays["n_train"], arrays["keys"], start
        ).compile()
        return compiled, time.perf_counter() - tic

    # -- training -------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Trains (or resumes) every chunk, then writes the evaluation outputs."""
        self.write_config()
        self.write_dataset_record()
        chunks = self.chunks()
        self._note_layout(chunks)
        steps = self.config.train.steps
        writer = self.writer()
        try:
            results = []
            with tqdm.tqdm(total=len(chunks) * steps, unit="step", desc="LOSO training") as bar:
                for chunk in chunks:
                    results.append(self._train_chunk(chunk, bar, writer, multi=len(chunks) > 1))
            metrics = self._report(results)
            for name in ("uf1", "uar", "accuracy"):
                writer.add_scalar(f"eval/{name}", metrics[name], steps)
        finally:
            writer.close()
        (self.workdir / "timing.json").write_text(json.dumps(self.stats.as_dict(), indent=2))
        return metrics

    def _train_chunk(
        self, chunk: Chunk, bar: tqdm.tqdm, writer: Any, multi: bool
    ) -> tuple[Chunk, np.ndarray, dict[str, list]]:
        config = self.config
        per_dispatch = config.engine.steps_per_dispatch
        arrays = self._chunk_arrays(chunk)
        ckpt = checkpoint.Checkpointer(self.checkpoint_root / chunk.name)
        meta = {
            "model": config.model.name,
            "replicas": _replica_list(chunk),
            "padded_size": chunk.padded_size,
            "history": {"step": []},
        }
        step = ckpt.latest_step() or 0
        if step:
            state, meta = ckpt.restore(step, self._abstract_state(arrays))
            _check_meta(meta, chunk, config, ckpt.directory)
        else:
            init = jax.jit(self.functions.init, out_shardings=arrays["keys"].sharding)
            state = init(arrays["keys"])
        bar.update(step)

        if step < config.train.steps:
            compiled, compile_s = self._compile_train(chunk)
            self.stats.compile_s += compile_s
            self._note_memory(compiled)
        replicated = NamedSharding(self.mesh, PartitionSpec())

        def dispatch(state: run.State, step: int) -> tuple[run.State, run.Metrics]:
            # The step numbers go over explicitly; everything else the steps need is
            # already on the device, so a hidden host<->device copy here would be a bug
            # (and slow): the transfer guard makes it an error.
            starts = [
                jax.device_put(np.int32(start), replicated)
                for start in range(step, step + per_dispatch, self.steps_per_call)
            ]
            per_call = []
            with jax.transfer_guard(config.engine.transfer_guard):
                for start in starts:
                    state, metrics = compiled(
                        state,
                        self.data,
                        arrays["train_idx"],
                        arrays["n_train"],
                        arrays["keys"],
                        start,
                    )
                    per_call.append(metrics)
            # Each call's metrics are its steps' means: the dispatch's mean is their mean.
            return state, {
                name: np.mean([m[name] for m in jax.device_get(per_call)], axis=0)
                for name in per_call[0]
            }

        state = self.train_loop(
            state=state,
            step=step,
            dispatch=dispatch,
            checkpointer=ckpt,
            meta=meta,
            stats=self.stats,
            samples_per_dispatch=len(chunk.replicas) * per_dispatch * config.train.batch_size,
            bar=bar,
            writer=writer,
            tag=f"train/{chunk.name}" if multi else "train",
            rows=len(chunk.replicas),
        )
        ckpt.close()
        self._note_memory()
        return chunk, self._predict(chunk, state, arrays), meta["history"]

    def _predict(self, chunk: Chunk, state: Any, arrays: dict[str, jax.Array]) -> np.ndarray:
        """Each replica's class probabilities on its own test subjects, evaluated once."""
        probs = self.functions.predict(state, self.data, arrays["test_idx"], arrays["keys"])
        if self.figure is not None:
            summaries = jax.device_get(self.functions.summarize(state, self.data))
            # Padding rows repeat a replica: left out.
            self.summaries.append({k: v[: len(chunk.replicas)] for k, v in summaries.items()})
        return np.asarray(jax.device_get(probs))

    # -- evaluation from checkpoints -----------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """Restores every chunk's final checkpoint and recomputes all evaluation outputs."""
        root = self.checkpoint_root
        directories = sorted(root.glob("chunk_*")) if root.is_dir() else []
        if not directories:
            raise UserError(
                f"No checkpoints in {root}: --mode=eval needs a finished training run in this "
                "workdir (run with --mode=train first)."
            )
        self.check_workdir()
        self.write_dataset_record()
        results, seen = [], []
        for index, directory in enumerate(directories):
            ckpt = checkpoint.Checkpointer(directory, async_save=False)
            step = ckpt.latest_step()
            meta = ckpt.restore_meta(step) if step is not None else None
            if meta is None or step != self.config.train.steps:
                raise UserError(
                    f"{directory} holds no finished training (step {step} of "
                    f"{self.config.train.steps}); run --mode=train to resume it first."
                )
            chunk = Chunk(index, tuple(Replica(*r) for r in meta["replicas"]), meta["padded_size"])
            _check_meta(meta, chunk, self.config, directory)
            arrays = self._chunk_arrays(chunk)
            state, meta = ckpt.restore(step, self._abstract_state(arrays))
            ckpt.close()
            results.append((chunk, self._predict(chunk, state, arrays), meta["history"]))
            seen.extend(chunk.replicas)
        missing = sorted(set(self.replicas) - set(seen), key=lambda r: (r.seed, r.fold))
        if missing:
            raise UserError(
                f"The checkpoints in {root} lack {len(missing)} (fold, seed) runs of this config, "
                f"e.g. {missing[:3]}; run --mode=train to finish them."
            )
        return self._report(results)

    def write_dataset_record(self) -> None:
        """Writes dataset.json: the build's name, metadata (crop and flow sizes, flow
        methods, T stored frames, ...), the run's class names and the shape and dtype of
        one sample of each feature: what a new clip's preprocessing, the models' inputs
        and the table of a prediction need."""
        record = {
            "name": self.dataset.name,
            "class_names": list(self.dataset.class_names),
            "metadata": dict(self.dataset.metadata),
            "features": {
                name: {"shape": list(values.shape[1:]), "dtype": str(values.dtype)}
                for name, values in self.dataset.examples.items()
            },
        }
        (self.workdir / DATASET_JSON).write_text(json.dumps(record, indent=2, sort_keys=True))

    # -- reports ---------------------------------------------------------------

    def _report(self, results: list[tuple[Chunk, np.ndarray, dict[str, list]]]) -> dict[str, Any]:
        parts, histories = [], []
        for chunk, probs, history in results:
            for row, replica in enumerate(chunk.replicas):
                count = self.n_test[replica.fold]
                samples = self.test_idx[replica.fold, :count]
                p = probs[row, :count]
                parts.append(
                    report.Predictions(
                        sample_id=self.dataset["sample_id"][samples],
                        dataset=self.dataset["dataset"][samples],
                        subject=self.dataset["subject"][samples],
                        fold=np.full(count, replica.fold),
                        seed=np.full(count, replica.seed),
                        label=self.dataset.labels[samples],
                        pred=p.argmax(-1),
                        probs=p,
                    )
                )
            histories.append(history)
        predictions = report.Predictions.concatenate(parts)
        metrics = report.write_all(
            self.workdir, predictions, self.dataset.class_names, _merge_histories(histories)
        )
        self._write_figures()
        return metrics

    def _write_figures(self) -> None:
        """Draws the method's figure from every replica's summaries, once per run."""
        if self.figure is None or not self.summaries:
            return
        stacked = {
            name: np.concatenate([part[name] for part in self.summaries])
            for name in self.summaries[0]
        }
        self.summaries = []
        labels = np.asarray(self.dataset.labels)
        self.figure(self.workdir, stacked, labels, self.dataset.class_names, self.abstract_model)

    def summarize(self, metrics: dict[str, Any]) -> str:
        return report.format_summary(metrics)

    # -- bookkeeping ------------------------------------------------------------

    def _note_layout(self, chunks: list[Chunk]) -> None:
        self.stats.num_chunks = len(chunks)
        self.stats.replicas_per_chunk = max(len(c.replicas) for c in chunks)

    def _note_memory(self, compiled: Any = None) -> None:
        if compiled is not None:
            analysis = compiled.memory_analysis()
            if analysis is not None:
                total = (
                    analysis.temp_size_in_bytes
                    + analysis.argument_size_in_bytes
                    + analysis.output_size_in_bytes
                )
                self.stats.compiled_bytes_per_device = max(
                    self.stats.compiled_bytes_per_device or 0, int(total)
                )
        memory = self.mesh.devices.flat[0].memory_stats() or {}
        if "peak_bytes_in_use" in memory:
            self.stats.peak_device_bytes = int(memory["peak_bytes_in_use"])


def _replica_list(chunk: Chunk) -> list[list[int]]:
    return [[r.fold, r.seed] for r in chunk.replicas]


def _check_meta(meta: dict, chunk: Chunk, config: ml_collections.ConfigDict, where: Any) -> None:
    if meta["model"] != config.model.name:
        raise UserError(
            f"{where} holds checkpoints of model {meta['model']!r}, but the config trains "
            f"{config.model.name!r}. Use another --workdir, or delete that checkpoints folder."
        )
    if meta["replicas"] != _replica_list(chunk):
        raise UserError(
            f"{where} was trained with another layout of (fold, seed) runs than this run plans "
            "(engine.mode or replicas_per_chunk changed). Resume with the engine settings of "
            "the original run (see config.json), or use another --workdir."
        )


def _merge_histories(histories: list[dict[str, list]]) -> dict[str, np.ndarray]:
    """Joins the chunks' curves side by side: (steps, all replicas) per metric."""
    merged = {"step": np.asarray(histories[0]["step"])}
    for name in histories[0]:
        if name != "step":
            merged[name] = np.concatenate([np.asarray(h[name]) for h in histories], axis=1)
    return merged
