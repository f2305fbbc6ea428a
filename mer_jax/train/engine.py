"""The LOSO engine: every fold of a protocol, under every seed, trained at once.

A MER dataset is a few hundred clips and LOSO means 16-68 trainings of a small
model, so one model at a time leaves an accelerator idle. Here a *replica* is
one (fold, seed) training run, and replicas are stacked (`stacking`: the layout and
the pure functions): one `jax.vmap`-ed step trains them all, sharded over the `fold`
axis of a device mesh, in chunks when the whole stack would not fit in device memory.

`engine.mode` chooses the layout: "stacked" (all replicas at once, chunked if
needed), "sequential" (one replica at a time, on one device: the comparison
baseline, and faster on a CPU, which is already compute-bound) or "auto"
(stacked on GPU/TPU, sequential on CPU). Every replica's randomness derives
from (seed, fold, step) alone, so both layouts train the same models.

`engine.loop` chooses how the steps of one dispatch run: "scan" (`lax.scan`, one
device program per dispatch) or "python" (one jitted step per call, queued
asynchronously and synchronised once per dispatch). XLA:CPU runs convolutions inside
a while loop several times slower than outside one (jax-ml/jax#12868; docs/engine.md
says why), so "auto" uses "python" on a CPU.

Stages of a run, in order: plan the replicas and chunks; per chunk, initialise
or resume from its checkpoint, train (`run.TrainingRun.train_loop`), save, and predict
its test subjects once; pool all out-of-fold predictions into the workdir's reports.
The dataset arrives loaded (`data_builders.load`, called by launch.py).
"""

import dataclasses
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from jax.sharding import NamedSharding, PartitionSpec

from mer_jax import checkpoint, guards, hosts, models
from mer_jax import workdir as layout
from mer_jax.data import loso
from mer_jax.data.dataset import MERDataset, put_on_device
from mer_jax.errors import DivergedError, UserError
from mer_jax.evaluate import figures, report
from mer_jax.train import init_from, optim, run, stacking, tuning
from mer_jax.train.stacking import Functions
from mer_jax.train.tuning import ChunkResult


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
# The run.
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class Stage:
    """One configuration trained over some replicas, with its own compiled functions and
    checkpoint folder: the plain run, or one grid point's inner or outer runs under nested
    selection (`mer_jax.train.tuning`)."""

    folder: str  # below checkpoints/: "" (the plain run), workdir.inner_folder(g), ...
    config: ml_collections.ConfigDict
    replicas: list[layout.Replica]
    functions: Functions
    abstract_model: models.MERModel
    label: str  # for the progress bar

    def directory(self, root: pathlib.Path) -> pathlib.Path:
        return root / self.folder if self.folder else root


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
        self.mode = stacking.resolve_mode(config.engine)
        self.loop = stacking.resolve_loop(config.engine)
        per_dispatch = config.engine.steps_per_dispatch
        self.steps_per_call = per_dispatch if self.loop == "scan" else 1
        self.mesh = stacking.make_mesh(self.mode, config.engine)
        self.fold_devices = self.mesh.shape["fold"]

        self.dataset = dataset
        self.folds = loso.make_folds(
            config.data.split,
            subjects=self.dataset["subject"],
            datasets=self.dataset["dataset"],
        )
        loso.assert_leak_free(self.folds, self.dataset["subject"])
        self.seeds = tuple(int(s) for s in config.seeds)
        folds = range(self.folds.num_folds)
        self.replicas = [layout.Replica(f, s) for s in self.seeds for f in folds]
        self.splits = tuning.make_splits(config, self.folds, self.dataset["subject"])
        self.split_names = self.splits.names
        self.train_idx, self.n_train = stacking.padded_indices(self.splits.train_masks)
        self.test_idx, self.n_test = stacking.padded_indices(self.splits.test_masks)

        models.model_class(config.model, self.TASK)
        # The run's model settings, those the build decides filled in (each grid point's
        # stage resolves its own the same way).
        self.model_config = models.with_build_settings(config.model, dataset.metadata)
        self.branches = None
        if config.get("init_from"):
            self.branches = init_from.prepare(config.init_from, config.model, dataset["subject"])
        self.points = layout.grid_points(config)
        # outer fold -> grid point, when another nested run's choices are reused.
        self.reused_choices = (
            tuning.reused_choices(config, self.folds, dataset) if config.tune.choices_from else None
        )
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

    def _check_batch_sizes(self) -> None:
        """Every configuration's batch must fit the training set of every split it trains."""
        used = range(len(self.n_train)) if self.points else range(self.folds.num_folds)
        smallest = min(used, key=lambda split: self.n_train[split])
        for config in [self.config] + [layout.apply_point(self.config, p) for p in self.points]:
            if config.train.batch_size > self.n_train[smallest]:
                raise UserError(
                    f"train.batch_size={config.train.batch_size} exceeds the "
                    f"{self.n_train[smallest]} training samples of "
                    f"{self.split_names[smallest]}; give at most that many."
                )

    def _make_stage(
        self,
        folder: str,
        config: ml_collections.ConfigDict,
        replicas: list[layout.Replica],
        label: str = "",
    ) -> Stage:
        model_config = models.with_build_settings(config.model, self.dataset.metadata)
        tx = optim.make_optimizer(config.train, self.branches.names if self.branches else ())
        functions, abstract_model = stacking.build_functions(
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
        probe = layout.Chunk(0, tuple(stage.replicas[: self.fold_devices]), self.fold_devices)
        compiled = self._compile_train(stage, probe)[0]
        data_bytes = sum(x.nbytes for x in jax.tree.leaves(self.data))
        per_replica = max(stacking.compiled_bytes(compiled) - data_bytes, 1)
        budget = 0.7 * (memory["bytes_limit"] - memory.get("bytes_in_use", 0))
        per_device = max(1, int(budget // per_replica))
        return per_device * self.fold_devices

    def chunks(self, stage: Stage | None = None) -> list[layout.Chunk]:
        """The chunks a stage (default: the plain run) trains in."""
        stage = stage or self.plain_stage
        return stacking.plan_chunks(
            stage.replicas, self._replicas_per_chunk(stage), self.fold_devices
        )

    # -- per-chunk device arrays ---------------------------------------------

    def _sharding(self, chunk: layout.Chunk) -> NamedSharding:
        """Rows split over the fold devices; replicated for a checkpoint stored for another
        device count whose stack does not divide evenly here (evaluation only)."""
        if chunk.padded_size % self.fold_devices:
            return NamedSharding(self.mesh, PartitionSpec())
        return self.stacked

    def _chunk_arrays(self, chunk: layout.Chunk) -> dict[str, jax.Array]:
        rows = chunk.rows
        folds = np.array([r.fold for r in rows])
        key_data = np.stack([jax.random.key_data(layout.replica_key(r)) for r in rows])
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

    def _compile_train(self, stage: Stage, chunk: layout.Chunk) -> tuple[Any, float]:
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
                self.workdir / layout.TIMING_JSON, json.dumps(self.stats.as_dict(), indent=2)
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
            rows, choices = tuning.select(
                self._run_inner_stages(training),
                self.points,
                self.folds,
                self.splits,
                self.dataset.labels,
                lambda split: self.test_idx[split, : self.n_test[split]],
                len(self.dataset.class_names),
            )
        outer = []
        for g in sorted(set(choices.values())):
            replicas = [r for r in self.replicas if choices[r.fold] == g]
            config = layout.apply_point(self.config, self.points[g])
            stage = self._make_stage(layout.outer_folder(g), config, replicas, "outer runs")
            outer.append((stage, self._run_stage(stage, training)))
        if self.primary and rows:
            guards.atomic_write_text(self.workdir / layout.TUNING_CSV, tuning.tuning_csv(rows))
        return self._report(outer, choices)

    def _run_inner_stages(self, training: bool) -> list[list[ChunkResult]]:
        """Every grid point trained (or restored) on every outer fold's inner folds."""
        inner_replicas = tuning.inner_replicas(self.config, self.seeds, self.splits)
        inner = []
        for g, point in enumerate(self.points):
            config = layout.apply_point(self.config, point)
            label = f"inner runs, grid point {g + 1}/{len(self.points)}"
            stage = self._make_stage(layout.inner_folder(g), config, inner_replicas, label)
            inner.append(self._run_stage(stage, training, report=False))
        return inner

    def _run_stage(self, stage: Stage, training: bool, report: bool = True) -> list[ChunkResult]:
        """Trains (or resumes) a stage's chunks, or restores their final checkpoints."""
        if not training:
            return self._restore_stage(stage, report)
        chunks = self.chunks(stage)
        layout.check_stage_checkpoints(stage.directory(self.checkpoint_root), chunks, stage.config)
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

    def _row_names(self, chunk: layout.Chunk) -> list[str]:
        """Each real row's replica, for messages: "fold 3 (synthetic_me/sub04), seed 1"."""
        return [f"{self.split_names[r.fold]}, seed {r.seed}" for r in chunk.replicas]

    def _train_chunk(
        self, stage: Stage, chunk: layout.Chunk, bar: tqdm.tqdm, subfolder: bool, report: bool
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
                    "replicas": chunk.replica_list,
                    "padded_size": chunk.padded_size,
                    "history": {"step": []},
                }
                init = jax.jit(stage.functions.init, out_shardings=arrays["keys"].sharding)
                state = init(arrays["keys"])
            else:
                layout.check_chunk_meta(meta, chunk, config, ckpt.directory)
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
        chunk: layout.Chunk,
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
        for index, directory in enumerate(layout.chunk_directories(root)):
            ckpt = checkpoint.Checkpointer(directory, async_save=False)
            try:
                chunk, step, meta = layout.finished_chunk(
                    ckpt, index, stage.config.train.steps, self.workdir
                )
                layout.check_chunk_meta(meta, chunk, stage.config, directory)
                arrays = self._chunk_arrays(chunk)
                state, meta = ckpt.restore(step, self._abstract_state(stage, arrays))
            except checkpoint.CheckpointDamaged as damaged:
                before = ckpt.steps()[:-1]  # the final step is the damaged one
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
        """Writes dataset.json (`workdir.dataset_record`): what predicting on a new clip
        needs to know of the build, so that it works without the data cache."""
        if self.primary:
            guards.atomic_write_text(
                self.workdir / layout.DATASET_JSON,
                json.dumps(layout.dataset_record(self.dataset), indent=2, sort_keys=True),
            )

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
        selection = tuning.selection_record(
            self.config, self.folds, choices, self.seeds, self.stats.num_replicas
        )
        extra = {**selection, **self.extra_metrics(predictions)}
        if not self.primary:  # every process has the predictions; process 0 writes
            return {**report.summarize(predictions, self.dataset.class_names), **extra}
        metrics = report.write_all(
            self.workdir,
            predictions,
            self.dataset.class_names,
            report.merge_histories(histories),
            extra=extra,
        )
        self._write_figures(outer[0][0].abstract_model)
        return metrics

    def extra_metrics(self, predictions: report.Predictions) -> dict[str, Any]:
        """More entries of metrics.json, from the pooled out-of-fold predictions: none
        here; the spotting run adds its intervals' scores (`mer_jax.train.spotting`)."""
        del predictions
        return {}

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
        total = stacking.compiled_bytes(compiled) if compiled is not None else None
        if total is not None:
            self.stats.compiled_bytes_per_device = max(
                self.stats.compiled_bytes_per_device or 0, total
            )
        memory = jax.local_devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in memory:
            self.stats.peak_device_bytes = int(memory["peak_bytes_in_use"])

