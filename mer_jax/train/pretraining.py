"""MA2MI pre-training: one data-parallel job over a macro-expression corpus.

Unlike the LOSO engine (many tiny models at once), pre-training is one model on
a larger corpus of frame pairs `(I_t, I_{t+k})` (a `PairCorpus`, loaded by
`data_builders.load`). The parameters are replicated and every batch is split over
the `data` axis of a mesh holding the run's devices; XLA inserts the gradient
all-reduce. The corpus is either

- resident: put on the devices once and sampled there, like the LOSO engine
  (when it fits in `data.resident_max_mb`), or
- streamed through grain from the build's array_record files (`data.streaming`
  "grain", or "auto" for a corpus too large to be resident): threads read and
  decode ahead, each batch goes to the devices with one explicit `device_put`.

Stages of `train` (the skeleton of `run.TrainingRun`): check the workdir; initialise
or resume from the Orbax checkpoint; train with progress, TensorBoard curves and
periodic checkpoints; then write `reconstructions.png` (reconstructions next to
their targets), `pretrain_metrics.json` (losses, pairs/s and frames/s) and the
pre-trained branches that `--config.init_from=<workdir>` loads
(`mer_jax.train.init_from`). `evaluate` redoes the outputs from the checkpoint.
The steps of a dispatch are one jitted step per call (a streamed batch arrives between
two steps), synchronised once per dispatch.
"""

import dataclasses
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from mer_jax import checkpoint, guards, hosts, models
from mer_jax.data.dataset import PairCorpus
from mer_jax.errors import UserError
from mer_jax.evaluate import figures
from mer_jax.train import init_from, optim, run

FIGURE_PNG = "reconstructions.png"
METRICS_JSON = "pretrain_metrics.json"
CORPUS_JSON = "corpus.json"
_FIGURE_PAIRS = 8
_EVAL_PAIRS = 512


@dataclasses.dataclass
class PretrainingStats(run.RunStats):
    """Where the time went (a sample is a pair), written to pretrain_metrics.json."""

    source: str = ""
    num_pairs: int = 0


class _CountedReads:
    """The corpus's pairs, noting which ones this process read (the share check)."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.read = np.zeros(len(source), bool)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        self.read[index] = True
        return self.source[index]


class _Subset:
    """Some pairs of a source, by index (one device's shard of the corpus)."""

    def __init__(self, source: Any, indices: np.ndarray) -> None:
        self.source = source
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return self.source[int(self.indices[index])]


class PretrainingRun(run.TrainingRun):
    """One configured MA2MI pre-training run, in one workdir."""

    TASK = "pretrain"
    DATA_KIND = "pairs"
    # How the corpus is read does not change what is trained.
    LOCATION_KEYS = (*run.TrainingRun.LOCATION_KEYS, "data.streaming", "data.resident_max_mb")

    def __init__(
        self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path, corpus: PairCorpus
    ):
        super().__init__(config, workdir)
        train = config.train
        self.seed = int(config.seeds[0])
        self.mesh = run.make_mesh(run.run_devices(config.engine), "data")
        # At least 2 pairs a device: with a single one, XLA:CPU (jax 0.12, 8 host devices)
        # returned NaN gradients for the first action block, while 2+ matched the
        # one-device gradients to 1e-6.
        if train.batch_size % self.mesh.size or train.batch_size < 2 * self.mesh.size:
            raise UserError(
                f"train.batch_size={train.batch_size} must be a multiple of the {self.mesh.size} "
                "devices on the data axis, at least 2 pairs per device (each gets an equal "
                "share)."
            )
        self.pairs = corpus
        self.reads = _CountedReads(corpus.source)
        self.excluded = {str(s) for s in config.data.exclude_subjects}
        metadata = corpus.metadata
        unknown = sorted(self.excluded - set(metadata["subjects"]))
        if unknown:
            raise UserError(
                f"data.exclude_subjects names {unknown}, which corpus {config.data.name!r} "
                f"does not hold; its subjects: {', '.join(metadata['subjects'])}."
            )
        self.corpus = {
            "datasets": [config.data.name],
            "subjects": sorted(set(metadata["subjects"]) - self.excluded),
            "excluded_subjects": sorted(self.excluded),
            "identities_known": bool(metadata["identities_known"]),
            "num_pairs": int(metadata["num_pairs"]),
        }
        self.model_class = models.model_class(config.model, self.TASK)
        dtype = jnp.dtype(config.engine.compute_dtype)
        self.create = lambda key: models.create_model(
            config.model, rngs=nnx.Rngs(key), dtype=dtype
        )
        abstract = nnx.eval_shape(lambda: self.create(jax.random.key(0)))
        self.graphdef = nnx.split(abstract, nnx.Param, ...)[0]
        self.fields = tuple(abstract.fields)
        self.tx = optim.make_optimizer(train)
        self.streaming = self._resolve_streaming()
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.split_batch = NamedSharding(self.mesh, PartitionSpec("data"))
        self.stats = PretrainingStats(
            backend=jax.default_backend(),
            device_kind=jax.devices()[0].device_kind,
            num_devices=self.mesh.size,
            source="grain" if self.streaming else "resident",
            num_pairs=self.corpus["num_pairs"],
        )
        self._step_fns = self._build_steps()

    def _resolve_streaming(self) -> bool:
        choice = self.config.data.streaming
        if choice not in ("auto", "resident", "grain"):
            raise UserError(f"Unknown data.streaming {choice!r}; use auto, resident or grain.")
        if choice == "auto":
            size_mb = self.pairs.frame_bytes / 2**20
            return size_mb > self.config.data.resident_max_mb
        return choice == "grain"

    # -- pure functions ---------------------------------------------------------

    def _build_steps(self) -> dict[str, Any]:
        graphdef, tx, fields = self.graphdef, self.tx, self.fields
        batch_size, seed = self.config.train.batch_size, self.seed
        update = run.make_update(graphdef, tx)

        def init() -> dict[str, Any]:
            _, params, rest = nnx.split(self.create(jax.random.key(seed)), nnx.Param, ...)
            return {"params": params, "rest": rest, "opt_state": tx.init(params)}

        def resident_step(state, data, pool, step):
            sample_key, prepare_key = jax.random.split(
                jax.random.fold_in(jax.random.key(seed), step)
            )
            idx = pool[jax.random.randint(sample_key, (batch_size,), 0, pool.shape[0])]
            # Each device gathers and trains on its own share of the batch.
            idx = jax.lax.with_sharding_constraint(idx, self.split_batch)
            return update(state, {f: data[f][idx] for f in fields}, None, prepare_key, None)

        def streamed_step(state, batch, step):
            key = jax.random.fold_in(jax.random.key(seed + 1), step)
            return update(state, batch, None, key, None)

        def reconstruct(state, batch):
            model = nnx.merge(graphdef, state["params"], state["rest"])
            outputs = model(model.prepare(batch, jax.random.key(0), train=False), train=False)
            loss, terms = model.loss(outputs, None)
            return outputs, {"loss": loss, **terms}

        return {
            "init": jax.jit(init, out_shardings=self.replicated),
            "resident": jax.jit(resident_step, donate_argnums=0),
            "streamed": jax.jit(streamed_step, donate_argnums=0),
            "reconstruct": jax.jit(reconstruct),
        }

    # -- corpus access --------------------------------------------------------

    def _resident_corpus(self) -> tuple[dict[str, jax.Array], jax.Array, dict[str, np.ndarray]]:
        examples = self.pairs.load_all()
        keep = np.flatnonzero(~np.isin(examples["subject"].astype(str), list(self.excluded)))
        # Every process holds the whole (resident-sized) corpus and fills its devices.
        data = {f: hosts.global_array(examples[f], self.replicated) for f in self.fields}
        pool = hosts.global_array(keep.astype(np.int32), self.replicated)
        return data, pool, {f: examples[f][keep] for f in self.fields}

    def _grain_batches(self, start_step: int) -> Iterator[dict[str, np.ndarray]]:
        """This process's rows of shuffled, endless global batches of pairs, read and
        decoded ahead by threads.

        The corpus is dealt into one shard per device of the `data` axis (pair i to device
        i mod D); each device's rows of a batch come from its own shard, shuffled apart.
        So a process reads only its devices' shards, and a global batch is the same
        whatever the number of processes. A resumed run reshuffles from its step (another
        order, same distribution) rather than replaying the reads it had done.
        """
        fields = self.fields
        devices = list(self.mesh.devices.flat)
        per_device = self.config.train.batch_size // len(devices)
        usable = self._usable_pairs()
        streams = []
        for d, device in enumerate(devices):
            if device.process_index != jax.process_index():
                continue
            shard = (
                grain.MapDataset.source(_Subset(self.reads, usable[d :: len(devices)]))
                .seed(self.seed * 100_003 + start_step * 1_009 + d)
                .shuffle()
                .repeat()
                .to_iter_dataset(
                    grain.ReadOptions(
                        num_threads=self.config.data.grain_threads,
                        prefetch_buffer_size=4 * per_device,
                    )
                )
                .map(lambda pair: {f: pair[f] for f in fields})
                .batch(per_device, drop_remainder=True)
            )
            streams.append(iter(shard))
        while True:
            parts = [next(stream) for stream in streams]
            yield {f: np.concatenate([part[f] for part in parts]) for f in fields}

    def _usable_pairs(self) -> np.ndarray:
        """The indices of the corpus's pairs not of an excluded subject (reading every
        pair's subject once, only when subjects are excluded)."""
        source = self.pairs.source
        if not self.excluded:
            return np.arange(len(source))
        keep = [
            index
            for index in tqdm.trange(len(source), desc="excluded subjects", unit="pair")
            if str(_text(source[index]["subject"])) not in self.excluded
        ]
        if len(keep) < len(self.mesh.devices.flat):
            raise UserError(
                f"only {len(keep)} pairs are left once data.exclude_subjects is applied, "
                f"fewer than the {len(self.mesh.devices.flat)} devices a batch is split over."
            )
        return np.asarray(keep)

    def _fixed_pairs(self, count: int) -> dict[str, np.ndarray]:
        """`count` pairs spread evenly over the corpus (not excluded), for figures and eval."""
        source = self.pairs.source
        indices = np.linspace(0, len(source) - 1, num=min(len(source), 4 * count)).astype(int)
        pairs = [source[int(i)] for i in indices]
        pairs = [p for p in pairs if str(_text(p["subject"])) not in self.excluded][:count]
        return {f: np.stack([p[f] for p in pairs]) for f in self.fields}

    # -- the run ----------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Trains (or resumes), then writes the figure, the metrics and the exported branches."""
        self.write_config()
        if self.primary:
            guards.atomic_write_text(
                self.workdir / CORPUS_JSON, json.dumps(self.corpus, indent=2)
            )

        ckpt = checkpoint.Checkpointer(self.checkpoint_root / "pretrain")
        try:
            state, meta = self._train_from_checkpoint(ckpt)
        finally:
            ckpt.close()
        return self._finish(state, meta["history"])

    def _train_from_checkpoint(self, ckpt: checkpoint.Checkpointer) -> tuple[Any, dict[str, Any]]:
        config = self.config
        step, state, meta = self.restore_latest(ckpt, self._abstract_state())
        if meta is None:
            meta = {"model": config.model.name, "history": {"step": []}}
            state = self._step_fns["init"]()
        if self.streaming:
            batches = self._grain_batches(step)
        else:
            data, pool, _ = self._resident_corpus()

        per_dispatch = config.engine.steps_per_dispatch

        def dispatch(state: run.State, step: int) -> tuple[run.State, run.Metrics]:
            per_step = []
            for current in range(step, step + per_dispatch):
                at = hosts.global_array(np.int32(current), self.replicated)
                if self.streaming:
                    # The one deliberate host->device copy of a step: this process's share
                    # of the global batch.
                    batch = jax.tree.map(
                        lambda local: jax.make_array_from_process_local_data(
                            self.split_batch, local
                        ),
                        next(batches),
                    )
                    state, metrics = self._run("streamed", state, batch, at)
                else:
                    state, metrics = self._run("resident", state, data, pool, at)
                per_step.append(metrics)
            return state, {
                k: np.mean([m[k] for m in hosts.to_host(per_step)], axis=0) for k in per_step[0]
            }

        writer = self.writer(purge_step=step or None)
        try:
            with tqdm.tqdm(
                total=config.train.steps, initial=step, unit="step", desc="MA2MI pre-training"
            ) as bar:
                state = self.train_loop(
                    state=state,
                    step=step,
                    dispatch=dispatch,
                    checkpointer=ckpt,
                    meta=meta,
                    stats=self.stats,
                    samples_per_dispatch=per_dispatch * config.train.batch_size,
                    bar=bar,
                    writer=writer,
                    tag="pretrain",
                )
        finally:
            writer.close()
        return state, meta

    def _run(self, name: str, *args: Any) -> Any:
        """Runs a step function under the transfer guard: everything it needs is already on
        the devices, so a hidden host<->device copy would be a bug (and slow). Its first
        call compiles it (tracing may make constants), counted apart from training."""
        function = self._step_fns[name]
        if not isinstance(function, jax.stages.Compiled):
            tic = time.perf_counter()
            function = self._step_fns[name] = function.lower(*args).compile()
            self.stats.compile_s += time.perf_counter() - tic
            hosts.barrier(f"compiled {name}")
        with jax.transfer_guard(self.config.engine.transfer_guard):
            return function(*args)

    def evaluate(self) -> dict[str, Any]:
        """Restores the final checkpoint and rewrites every output of `train`."""
        ckpt = checkpoint.Checkpointer(self.checkpoint_root / "pretrain", async_save=False)
        try:
            step = ckpt.latest_step()
            if step != self.config.train.steps:
                raise UserError(
                    f"{ckpt.directory} holds no finished pre-training (step {step} of "
                    f"{self.config.train.steps}); run --mode=train to resume it first."
                )
            try:
                state, meta = ckpt.restore(step, self._abstract_state())
            except checkpoint.CheckpointDamaged as damaged:
                raise UserError(
                    f"{damaged}; run --mode=train to set it aside and retrain from the "
                    "previous intact step, then --mode=eval."
                ) from None
        finally:
            ckpt.close()
        return self._finish(state, meta["history"])

    def _abstract_state(self) -> Any:
        shapes = jax.eval_shape(self._step_fns["init"])
        return checkpoint.abstract_like(shapes, self.replicated)

    def _finish(self, state: Any, history: dict[str, list]) -> dict[str, Any]:
        """Figure, held-out-free reconstruction loss on fixed pairs, metrics, exported branches."""
        pairs = self._fixed_pairs(_EVAL_PAIRS)
        count = len(pairs[self.fields[0]])
        usable = count - count % self.mesh.size
        batch = {f: hosts.global_array(v[:usable], self.split_batch) for f, v in pairs.items()}
        outputs, terms = hosts.to_host(self._step_fns["reconstruct"](state, batch))
        model_state = hosts.to_host({"params": state["params"], "rest": state["rest"]})
        metrics = {
            "steps": history["step"][-1] if history["step"] else 0,
            "final_train": {k: v[-1] for k, v in history.items() if k != "step" and v},
            "fixed_pairs_eval": {k: float(v) for k, v in terms.items()},
            "fixed_pairs": usable,
            **self.stats.as_dict(),
            "pairs_per_s": self.stats.samples_per_s,
            # Each pair is two frames: the throughput in frames the corpus is read at.
            "frames_per_s": 2 * self.stats.samples_per_s,
            "corpus": {k: v for k, v in self.corpus.items() if k != "subjects"},
            "num_subjects": len(self.corpus["subjects"]),
        }
        if self.streaming:
            # Which pairs each process read: their shares must not overlap.
            read = hosts.gather_from_processes(self.reads.read)
            metrics["corpus_reads"] = {
                "per_process": [int(n) for n in read.sum(axis=1)],
                "read_by_several_processes": int((read.sum(axis=0) > 1).sum()),
            }
        # Every process takes part in the (Orbax) export; process 0 writes the rest.
        init_from.export(
            self.workdir,
            model_state["params"],
            model_state["rest"],
            branches=self.model_class.SHARED_BRANCHES,
            settings=models.branch_settings(self.config.model),
            corpus=self.corpus,
        )
        if not self.primary:
            return metrics
        shown = slice(0, _FIGURE_PAIRS)
        figures.plot_reconstructions(
            self.workdir / FIGURE_PNG,
            pairs[self.fields[0]][shown],
            outputs["target"][shown],
            outputs["reconstruction"][shown],
        )
        guards.atomic_write_text(self.workdir / METRICS_JSON, json.dumps(metrics, indent=2))
        return metrics

    def summarize(self, metrics: dict[str, Any]) -> str:
        """The lines printed at the end of a pre-training run."""
        final = metrics["fixed_pairs_eval"]
        terms = ", ".join(f"{k} {v:.4f}" for k, v in final.items())
        return (
            f"MA2MI pre-training: {metrics['steps']} steps on {metrics['num_pairs']} pairs of "
            f"{metrics['num_subjects']} subjects ({metrics['source']}); reconstruction on "
            f"{metrics['fixed_pairs']} fixed pairs: {terms}; {metrics['frames_per_s']:.0f} "
            f"frames/s on {metrics['num_devices']} {metrics['backend']} device(s). Branches "
            f"for --config.init_from={self.workdir}"
        )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
