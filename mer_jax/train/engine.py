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

from mer_jax import guards, hosts, models
from mer_jax.data import loso
from mer_jax.data.dataset import MERDataset, put_on_device
from mer_jax.errors import DivergedError, UserError
from mer_jax.evaluate import figures, report
from mer_jax.train import checkpoint, init_from, optim, run, tuning

# What predicting on a new clip needs to know of the build, kept in the workdir so that
# `mer_jax.predict` works without the data cache: the preprocessing settings and classes.
DATASET_JSON = "dataset.json"


@dataclasses.dataclass(frozen=True, order=True)
class Replica:
    """One training run: LOSO fold `fold` under random seed `seed` (ordered by fold)."""

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


def replica_key(replica: Replica) -> jax.Array:
    """A replica's key: all its randomness derives from (seed, fold) and the step."""
    return jax.random.fold_in(jax.random.key(replica.seed), replica.fold)


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


@dataclasses.dataclass
class Stage:
    """One configuration trained over some replicas, with its own compiled functions and
    checkpoint folder: the plain run, or one grid point's inner or outer runs under nested
    selection (`mer_jax.train.tuning`)."""

    folder: str  # below checkpoints/: "" (the plain run), "inner_g00", "outer_g01", ...
    config: ml_collections.ConfigDict
    replicas: list[Replica]
    functions: Functions
    abstract_model: models.MERModel
    label: str  # for the progress bar

    def directory(self, root: pathlib.Path) -> pathlib.Path:
        return root / self.folder if self.folder else root


# (chunk, each real row's test probabilities, the chunk's training curves)
ChunkResult = tuple[Chunk, np.ndarray, dict[str, list]]


class LosoRun(run.TrainingRun):
    """One configured LOSO experiment over all folds and seeds, in one workdir.

    A replica's `fold` indexes the run's splits: the outer LOSO folds first (0..F-1),
    then, under nested selection, every outer fold's inner folds (`split_names`).
    """

    TASK = "loso"
    LAYOUT_KEYS = ("engine.mode", "engine.replicas_per_chunk", "engine.devices")

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
        self.replicas = [Replica(f, s) for s in self.seeds for f in range(self.folds.num_folds)]
        self._make_splits()

        models.model_class(config.model, self.TASK)
        # The run's model settings, those the build decides filled in (each grid point's
        # stage resolves its own the same way).
        self.model_config = models.with_build_settings(config.model, dataset.metadata)
        self.branches = None
        if config.get("init_from"):
            self.branches = init_from.prepare(config.init_from, config.model, dataset["subject"])
        self.points = tuning.grid_points(config)
        # outer fold -> grid point, when another nested run's choices are reused.
        self.reused_choices = self._reused_choices() if config.tune.choices_from else None
        # The run's own configuration over every (fold, seed) replica: the plain run
        # (under nested selection it only tells which fields the model reads).
        self.plain_stage = self._make_stage("", config, self.replicas)
        self.abstract_model = self.plain_stage.abstract_model
        self.data = put_on_device(dataset, self.abstract_model.fields, self.mesh)
        # Summaries of every reported replica (chunk by chunk, real rows only) for the
        # method's figure, if it has one.
        self.figure = figures.METHOD_FIGURES.get(config.model.name)
        self.summaries: list[dict[str, np.ndarray]] = []
        self._check_batch_sizes()

        self.stacked = NamedSharding(self.mesh, PartitionSpec("fold"))
        self.stats = LosoStats(
            backend=jax.default_backend(),
            device_kind=jax.devices()[0].device_kind,
            num_devices=self.mesh.size,
            mode=self.mode,
            loop=self.loop,
        )

    # -- splits, stages ------------------------------------------------------------------

    def _make_splits(self) -> None:
        """The train/test sample indices of every split: outer folds, then inner folds."""
        num_folds = self.folds.num_folds
        train_masks, test_masks = [self.folds.train_mask], [self.folds.test_mask]
        self.split_names = [
            f"fold {f} ({self.folds.test_groups[f]})" for f in range(num_folds)
        ]
        self.inner_splits: dict[int, list[int]] = {}
        if tuning.grid_values(self.config) and not self.config.tune.choices_from:
            subjects = self.dataset["subject"]
            for f in range(num_folds):
                inner = loso.inner_folds(self.folds, f, subjects, self.config.tune.inner_folds)
                start = sum(len(m) for m in train_masks)
                self.inner_splits[f] = list(range(start, start + inner.num_folds))
                train_masks.append(inner.train_mask)
                test_masks.append(inner.test_mask)
                self.split_names += [
                    f"inner fold {i} ({group}) of fold {f}"
                    for i, group in enumerate(inner.test_groups)
                ]
        self.train_idx, self.n_train = _padded_indices(np.concatenate(train_masks))
        self.test_idx, self.n_test = _padded_indices(np.concatenate(test_masks))

    def _reused_choices(self) -> dict[int, int]:
        """tune.choices_from's choice for each outer fold, once its folds are shown to be
        this run's: the same test groups, and every sample with the same subject, dataset
        and outer fold."""
        source = self.config.tune.choices_from
        chosen = tuning.read_choices(source, self.config)
        groups = self.folds.test_groups
        if set(chosen) != set(groups):
            raise UserError(
                f"tune.choices_from={source!r} chose for the outer folds {sorted(chosen)}, this "
                f"run's are {sorted(groups)}: it is on other data or another split."
            )

        def placed(*columns: np.ndarray) -> set[tuple]:  # (sample, subject, dataset, fold)
            return set(zip(*(column.tolist() for column in columns), strict=True))

        theirs = report.read_predictions_csv(
            pathlib.Path(source).expanduser() / report.PREDICTIONS_CSV
        )
        fields = [self.dataset[name] for name in ("sample_id", "subject", "dataset")]
        if placed(*fields, self.folds.test_mask.argmax(axis=0)) != placed(
            theirs.sample_id, theirs.subject, theirs.dataset, theirs.fold
        ):
            raise UserError(
                f"tune.choices_from={source!r} was trained on other samples or folds than this "
                "run (same data.name, overrides and split needed); its choices do not apply."
            )
        return {f: chosen[group] for f, group in enumerate(groups)}

    def _check_batch_sizes(self) -> None:
        """Every configuration's batch must fit the training set of every split it trains."""
        used = range(len(self.n_train)) if self.points else range(self.folds.num_folds)
        smallest = min(used, key=lambda split: self.n_train[split])
        for config in [self.config] + [tuning.apply_point(self.config, p) for p in self.points]:
            if config.train.batch_size > self.n_train[smallest]:
                raise UserError(
                    f"train.batch_size={config.train.batch_size} exceeds the "
                    f"{self.n_train[smallest]} training samples of "
                    f"{self.split_names[smallest]}; give at most that many."
                )

    def _make_stage(
        self, folder: str, config: ml_collections.ConfigDict, replicas: list[Replica], label=""
    ) -> Stage:
        model_config = models.with_build_settings(config.model, self.dataset.metadata)
        tx = optim.make_optimizer(config.train, self.branches.names if self.branches else ())
        functions, abstract_model = build_functions(
            config,
            model_config,
            len(self.dataset.class_names),
            tx,
            self.steps_per_call,
            self.branches,
        )
        return Stage(folder, config, replicas, functions, abstract_model, label or "LOSO training")

    # -- chunk layout -------------------------------------------------------

    def _replicas_per_chunk(self, stage: Stage) -> int:
        if self.mode == "sequential":
            return 1
        if self.config.engine.replicas_per_chunk > 0:
            return self.config.engine.replicas_per_chunk
        return self._replicas_that_fit(stage)

    def _replicas_that_fit(self, stage: Stage) -> int:
        """How many replicas fit in device memory, from the compiled step's own estimate.

        Backends that report no memory limit (the CPU) get every replica at once.
        """
        memory = jax.local_devices()[0].memory_stats() or {}
        if "bytes_limit" not in memory:
            return len(stage.replicas)
        probe = Chunk(0, tuple(stage.replicas[: self.fold_devices]), self.fold_devices)
        analysis = self._compile_train(stage, probe)[0].memory_analysis()
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

    def chunks(self, stage: Stage | None = None) -> list[Chunk]:
        """The chunks a stage (default: the plain run) trains in."""
        stage = stage or self.plain_stage
        return plan_chunks(stage.replicas, self._replicas_per_chunk(stage), self.fold_devices)

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
        key_data = np.stack([jax.random.key_data(replica_key(r)) for r in rows])
        host = {
            "train_idx": self.train_idx[folds],
            "n_train": self.n_train[folds],
            "test_idx": self.test_idx[folds],
        }
        sharding = self._sharding(chunk)
        # Every process holds the whole chunk's arrays and fills its own devices' rows.
        arrays = {name: hosts.global_array(values, sharding) for name, values in host.items()}
        arrays["keys"] = hosts.global_keys(key_data, sharding)
        return arrays

    def _abstract_state(self, stage: Stage, arrays: dict[str, jax.Array]) -> Any:
        """The state's shapes, placed like the chunk's keys: the checkpoint restore target."""
        shapes = jax.eval_shape(stage.functions.init, arrays["keys"])
        return checkpoint.abstract_like(shapes, arrays["keys"].sharding)

    def _compile_train(self, stage: Stage, chunk: Chunk) -> tuple[Any, float]:
        arrays = self._chunk_arrays(chunk)
        state = self._abstract_state(stage, arrays)
        start = jax.ShapeDtypeStruct((), jnp.int32)
        tic = time.perf_counter()
        compiled = stage.functions.train.lower(
            state, self.data, arrays["train_idx"], arrays["n_train"], arrays["keys"], start
        ).compile()
        return compiled, time.perf_counter() - tic

    # -- the run: train, or evaluate from checkpoints -------------------------------------

    def train(self) -> dict[str, Any]:
        """Trains (or resumes) every stage, then writes the evaluation outputs."""
        metrics = self._execute(training=True)
        writer = self.writer()
        for name in ("uf1", "uar", "accuracy"):
            writer.add_scalar(f"eval/{name}", metrics[name], self.config.train.steps)
        writer.close()
        if self.primary:
            guards.atomic_write_text(
                self.workdir / "timing.json", json.dumps(self.stats.as_dict(), indent=2)
            )
        return metrics

    def evaluate(self) -> dict[str, Any]:
        """Restores every chunk's final checkpoint and recomputes all evaluation outputs.

        Raises:
            UserError: no finished checkpoints, or a damaged one (named, with what to do).
        """
        return self._execute(training=False)

    def _execute(self, *, training: bool) -> dict[str, Any]:
        """The plain run, or nested selection: inner stages, the choices, outer stages."""
        self._written = not training
        if not training:
            self.write_dataset_record()
        if not self.points:
            stage = self.plain_stage
            return self._report([(stage, self._run_stage(stage, training))], None)
        if self.reused_choices is not None:
            rows, choices = [], self.reused_choices
        else:
            rows, choices = self._select(self._run_inner_stages(training))
        outer = []
        for g in sorted(set(choices.values())):
            replicas = [r for r in self.replicas if choices[r.fold] == g]
            config = tuning.apply_point(self.config, self.points[g])
            stage = self._make_stage(f"outer_g{g:02d}", config, replicas, "outer runs")
            outer.append((stage, self._run_stage(stage, training)))
        if self.primary and rows:
            guards.atomic_write_text(self.workdir / tuning.TUNING_CSV, tuning.tuning_csv(rows))
        return self._report(outer, choices)

    def _run_inner_stages(self, training: bool) -> list[list[ChunkResult]]:
        """Every grid point trained (or restored) on every outer fold's inner folds."""
        inner_replicas = [
            Replica(split, seed)
            for seed in (self.config.tune.seeds or self.seeds)
            for f in range(self.folds.num_folds)
            for split in self.inner_splits[f]
        ]
        inner = []
        for g, point in enumerate(self.points):
            config = tuning.apply_point(self.config, point)
            label = f"inner runs, grid point {g + 1}/{len(self.points)}"
            stage = self._make_stage(f"inner_g{g:02d}", config, inner_replicas, label)
            inner.append(self._run_stage(stage, training, report=False))
        return inner

    def _run_stage(self, stage: Stage, training: bool, report: bool = True) -> list[ChunkResult]:
        """Trains (or resumes) a stage's chunks, or restores their final checkpoints."""
        if not training:
            return self._restore_stage(stage, report)
        chunks = self.chunks(stage)
        self._check_checkpoint_layout(stage, chunks)
        if not self._written:
            self.write_config()
            self.write_dataset_record()
            self._written = True
        self.stats.num_replicas += len(stage.replicas)
        self.stats.num_chunks += len(chunks)
        self.stats.replicas_per_chunk = max(
            self.stats.replicas_per_chunk, *(len(c.replicas) for c in chunks)
        )
        total = len(chunks) * stage.config.train.steps
        with tqdm.tqdm(
            total=total, unit="step", desc=stage.label, disable=not self.primary
        ) as bar:
            return [
                self._train_chunk(stage, chunk, bar, len(chunks) > 1 or bool(stage.folder), report)
                for chunk in chunks
            ]

    def _check_checkpoint_layout(self, stage: Stage, chunks: list[Chunk]) -> None:
        """Refuses checkpoints stacked otherwise than this run plans, before anything is
        written (a resume on another backend may resolve `auto` differently)."""
        planned = {chunk.name: chunk for chunk in chunks}
        root = stage.directory(self.checkpoint_root)
        for directory in sorted(root.glob("chunk_*")) if root.is_dir() else []:
            ckpt = checkpoint.Checkpointer(directory, async_save=False)
            try:
                steps = ckpt.steps()
                if not steps:
                    continue
                if directory.name not in planned:
                    raise UserError(
                        f"{directory} does not fit this run's plan of {len(chunks)} chunks (the "
                        "engine layout differs: engine.mode, replicas_per_chunk or the devices)."
                        " Resume with the settings and device count of the original run (see "
                        "its config.json), or use another --workdir."
                    )
                try:
                    meta = ckpt.restore_meta(steps[-1])
                except checkpoint.CheckpointDamaged:
                    continue  # set aside when its chunk resumes
                _check_meta(meta, planned[directory.name], stage.config, directory)
            finally:
                ckpt.close()

    def _row_names(self, chunk: Chunk) -> list[str]:
        """Each real row's replica, for messages: "fold 3 (synthetic_me/sub04), seed 1"."""
        return [f"{self.split_names[r.fold]}, seed {r.seed}" for r in chunk.replicas]

    def _train_chunk(
        self, stage: Stage, chunk: Chunk, bar: tqdm.tqdm, subfolder: bool, report: bool
    ) -> ChunkResult:
        config = stage.config
        arrays = self._chunk_arrays(chunk)
        directory = stage.directory(self.checkpoint_root) / chunk.name
        ckpt = checkpoint.Checkpointer(directory)
        try:
            step, state, meta = self.restore_latest(ckpt, self._abstract_state(stage, arrays))
            if meta is None:
                meta = {
                    "model": config.model.name,
                    "replicas": _replica_list(chunk),
                    "padded_size": chunk.padded_size,
                    "history": {"step": []},
                }
                init = jax.jit(stage.functions.init, out_shardings=arrays["keys"].sharding)
                state = init(arrays["keys"])
            else:
                _check_meta(meta, chunk, config, ckpt.directory)
            bar.update(step)
            dispatch = writer = None
            if step < config.train.steps:
                compiled, compile_s = self._compile_train(stage, chunk)
                timing = meta.setdefault(
                    "timing", {"compile_s": 0.0, "train_s": 0.0, "train_samples": 0}
                )
                timing["compile_s"] += compile_s
                self._note_memory(compiled)
                hosts.barrier(f"compiled {directory.name}")
                dispatch = self._dispatch_of(config, compiled, arrays)
                # One TensorBoard run per chunk; a resumed one drops the curves the
                # interrupted process wrote after its last checkpoint.
                folder = str(directory.relative_to(self.checkpoint_root)) if subfolder else ""
                writer = self.writer(folder, purge_step=step or None)
            try:
                state = self.train_loop(
                    state=state,
                    step=step,
                    dispatch=dispatch,
                    checkpointer=ckpt,
                    meta=meta,
                    stats=self.stats,
                    samples_per_dispatch=len(chunk.replicas)
                    * config.engine.steps_per_dispatch
                    * config.train.batch_size,
                    bar=bar,
                    writer=writer,
                    tag="train",
                    row_names=self._row_names(chunk),
                )
            finally:
                if writer is not None:
                    writer.close()
        finally:
            ckpt.close()
        self._note_memory()
        return chunk, self._predict(stage, chunk, state, arrays, report), meta["history"]

    def _dispatch_of(
        self, config: ml_collections.ConfigDict, compiled: Any, arrays: dict[str, jax.Array]
    ) -> Any:
        """One dispatch of a chunk: `steps_per_dispatch` steps on the device."""
        per_dispatch = config.engine.steps_per_dispatch
        replicated = NamedSharding(self.mesh, PartitionSpec())

        def dispatch(state: run.State, step: int) -> tuple[run.State, run.Metrics]:
            # The step numbers go over explicitly; everything else the steps need is
            # already on the device, so a hidden host<->device copy here would be a bug
            # (and slow): the transfer guard makes it an error.
            starts = [
                hosts.global_array(np.int32(start), replicated)
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
                name: np.mean([m[name] for m in hosts.to_host(per_call)], axis=0)
                for name in per_call[0]
            }

        return dispatch

    def _predict(
        self,
        stage: Stage,
        chunk: Chunk,
        state: Any,
        arrays: dict[str, jax.Array],
        report: bool = True,
    ) -> np.ndarray:
        """Each replica's class probabilities on its own test subjects, evaluated once.

        Raises:
            DivergedError: a replica's probabilities are not finite (never reported).
        """
        probs = stage.functions.predict(state, self.data, arrays["test_idx"], arrays["keys"])
        probs = np.asarray(hosts.to_host(probs))
        for row, name in enumerate(self._row_names(chunk)):
            count = self.n_test[chunk.replicas[row].fold]
            if not np.isfinite(probs[row, :count]).all():
                raise DivergedError(
                    f"the trained model of {name} predicts non-finite probabilities (its "
                    f"weights diverged); nothing is reported. Train again in a new --workdir "
                    "with a lower train.learning_rate."
                )
        if report and self.figure is not None:
            summaries = hosts.to_host(stage.functions.summarize(state, self.data))
            # Padding rows repeat a replica: left out.
            self.summaries.append({k: v[: len(chunk.replicas)] for k, v in summaries.items()})
        return probs

    def _restore_stage(self, stage: Stage, report: bool) -> list[ChunkResult]:
        """Every chunk's final checkpoint of a stage, restored onto this run's devices (in
        whatever layout it was trained), predicting its test subjects."""
        root = stage.directory(self.checkpoint_root)
        results, seen = [], []
        steps = stage.config.train.steps
        for index, directory in enumerate(sorted(root.glob("chunk_*")) if root.is_dir() else []):
            ckpt = checkpoint.Checkpointer(directory, async_save=False)
            try:
                step = ckpt.latest_step()
                if step != steps:
                    raise UserError(
                        f"{directory} holds no finished training (step {step} of {steps}); "
                        "run --mode=train to resume it first."
                    )
                try:
                    meta = ckpt.restore_meta(step)
                    chunk = Chunk(
                        index, tuple(Replica(*r) for r in meta["replicas"]), meta["padded_size"]
                    )
                    _check_meta(meta, chunk, stage.config, directory)
                    arrays = self._chunk_arrays(chunk)
                    state, meta = ckpt.restore(step, self._abstract_state(stage, arrays))
                except checkpoint.CheckpointDamaged as damaged:
                    before = [s for s in ckpt.steps() if s < step]
                    fallback = (
                        f"run --mode=train to set it aside and retrain from step {before[-1]}"
                        if before
                        else f"delete {directory} and run --mode=train to retrain it"
                    )
                    raise UserError(f"{damaged}; {fallback}, then --mode=eval.") from None
            finally:
                ckpt.close()
            probs = self._predict(stage, chunk, state, arrays, report)
            results.append((chunk, probs, meta["history"]))
            seen.extend(chunk.replicas)
        missing = sorted(set(stage.replicas) - set(seen), key=lambda r: (r.seed, r.fold))
        if missing:
            raise UserError(
                f"The checkpoints in {root} lack {len(missing)} (fold, seed) runs of this config, "
                f"e.g. {missing[:3]}; run --mode=train to finish them."
            )
        return results

    def write_dataset_record(self) -> None:
        """Writes dataset.json: the build's name, metadata (crop and flow sizes, flow
        methods, T stored frames, ...), the run's class names and the shape and dtype of
        one sample of each feature: what a new clip's preprocessing, the models' inputs
        and the table of a prediction need."""
        if not self.primary:
            return
        record = {
            "name": self.dataset.name,
            "class_names": list(self.dataset.class_names),
            "metadata": dict(self.dataset.metadata),
            "features": {
                name: {"shape": list(values.shape[1:]), "dtype": str(values.dtype)}
                for name, values in self.dataset.examples.items()
            },
        }
        guards.atomic_write_text(
            self.workdir / DATASET_JSON, json.dumps(record, indent=2, sort_keys=True)
        )

    # -- nested selection -------------------------------------------------------------

    def _select(
        self, inner: list[list[ChunkResult]]
    ) -> tuple[list[dict[str, Any]], dict[int, int]]:
        """Scores every grid point on every outer fold by its pooled inner predictions and
        chooses one per outer fold. Returns tuning.csv's rows and outer fold -> point."""
        labels = self.dataset.labels
        num_classes = len(self.dataset.class_names)
        # (grid point, split) -> [(seed, labels, predictions)]
        pooled: dict[tuple[int, int], list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for g, results in enumerate(inner):
            for chunk, probs, _ in results:
                for row, replica in enumerate(chunk.replicas):
                    count = self.n_test[replica.fold]
                    samples = self.test_idx[replica.fold, :count]
                    entry = (replica.seed, labels[samples], probs[row, :count].argmax(-1))
                    pooled.setdefault((g, replica.fold), []).append(entry)
        rows, choices = [], {}
        for f in range(self.folds.num_folds):
            scores = []
            for g in range(len(self.points)):
                parts = [e for split in self.inner_splits[f] for e in pooled[g, split]]
                scores.append(
                    tuning.inner_score(
                        np.concatenate([labels for _, labels, _ in parts]),
                        np.concatenate([preds for _, _, preds in parts]),
                        np.concatenate([np.full(len(p), s) for s, _, p in parts]),
                        num_classes,
                    )
                )
            choices[f] = tuning.choose(scores)
            for g, (point, score) in enumerate(zip(self.points, scores, strict=True)):
                rows.append(
                    {
                        "outer_fold": f,
                        "test_subject": self.folds.test_groups[f],
                        "grid_point": g,
                        **{name: repr(value) for name, value in point.items()},
                        "inner_uf1": f"{score['uf1']:.6f}",
                        "inner_uar": f"{score['uar']:.6f}",
                        "inner_folds": len(self.inner_splits[f]),
                        "chosen": g == choices[f],
                    }
                )
        return rows, choices

    # -- reports ---------------------------------------------------------------

    def _report(
        self, outer: list[tuple[Stage, list[ChunkResult]]], choices: dict[int, int] | None
    ) -> dict[str, Any]:
        parts, histories = [], []
        for _, results in outer:
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
        selection = {"selection": "fixed"}
        if choices is not None:
            made_by = (
                {"choices_from": str(self.config.tune.choices_from)}
                if self.reused_choices is not None
                else {
                    "inner_folds": self.config.tune.inner_folds or "leave one subject out",
                    "inner_seeds": list(self.config.tune.seeds or self.seeds),
                }
            )
            selection = {
                "selection": "nested",
                "tuning": {
                    "grid": {k: list(v) for k, v in tuning.grid_values(self.config).items()},
                    **made_by,
                    "chosen": {
                        self.folds.test_groups[f]: tuning.describe(self.points[g])
                        for f, g in sorted(choices.items())
                    },
                    "replicas": self.stats.num_replicas,
                },
            }
        if not self.primary:  # every process has the predictions; process 0 writes
            return {**report.summarize(predictions, self.dataset.class_names), **selection}
        metrics = report.write_all(
            self.workdir,
            predictions,
            self.dataset.class_names,
            _merge_histories(histories),
            extra=selection,
        )
        self._write_figures(outer[0][0].abstract_model)
        return metrics

    def _write_figures(self, abstract_model: models.MERModel) -> None:
        """Draws the method's figure from every reported replica's summaries, once."""
        if self.figure is None or not self.summaries:
            return
        stacked = {
            name: np.concatenate([part[name] for part in self.summaries])
            for name in self.summaries[0]
        }
        self.summaries = []
        labels = np.asarray(self.dataset.labels)
        self.figure(self.workdir, stacked, labels, self.dataset.class_names, abstract_model)

    def summarize(self, metrics: dict[str, Any]) -> str:
        return report.format_summary(metrics)

    # -- bookkeeping ------------------------------------------------------------

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
        memory = jax.local_devices()[0].memory_stats() or {}
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
    """Joins the chunks' curves side by side: (steps, all replicas) per metric, over the
    union of their steps (NaN where a chunk has no value: grid points may train for
    different numbers of steps)."""
    steps = np.asarray(sorted({s for h in histories for s in h["step"]}))
    merged = {"step": steps}
    for name in histories[0]:
        if name == "step":
            continue
        columns = []
        for history in histories:
            values = np.asarray(history[name], np.float64)
            full = np.full((len(steps), values.shape[1]), np.nan)
            full[np.searchsorted(steps, history["step"])] = values
            columns.append(full)
        merged[name] = np.concatenate(columns, axis=1)
    return merged
