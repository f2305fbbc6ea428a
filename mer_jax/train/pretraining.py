"""MA2MI pre-training: one data-parallel job over a macro-expression corpus.

Unlike the LOSO engine (many tiny models at once), pre-training is one model on
a larger corpus of frame pairs `(I_t, I_{t+k})` (built by the macro builders of
`data_builders`). The parameters are replicated and every batch is split over
the `data` axis of a mesh holding all devices; XLA inserts the gradient
all-reduce. The corpus is either

- resident: put on the devices once and sampled there, like the LOSO engine
  (when it fits in `data.resident_max_mb`), or
- streamed through grain from the build's array_record files (`data.streaming`
  "grain", or "auto" for a corpus too large to be resident): threads read and
  decode ahead, each batch goes to the devices with one explicit `device_put`.

Stages of `train`: check the workdir; build or reuse the corpus; initialise or
resume from the Orbax checkpoint; train with progress, TensorBoard curves and
periodic checkpoints; then write `reconstructions.png` (reconstructions next to
their targets), `pretrain_metrics.json` (losses, pairs/s and frames/s) and the
pre-trained branches that `--config.init_from=<workdir>` loads
(`mer_jax.train.pretrained`). `evaluate` redoes the outputs from the checkpoint.
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
import optax
import tqdm
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
from tensorboardX import SummaryWriter

import data_builders
from mer_jax import models
from mer_jax.errors import UserError
from mer_jax.models import ma2mi, miacnet
from mer_jax.train import checkpoint, engine, optim, pretrained

FIGURE_PNG = "reconstructions.png"
METRICS_JSON = "pretrain_metrics.json"
CORPUS_JSON = "corpus.json"
_FIGURE_PAIRS = 8
_EVAL_PAIRS = 512
# Sections whose change makes a workdir's checkpoint belong to another experiment.
_RUN_DEFINING_SECTIONS = ("data", "model", "train", "seed")
_LOCATION_KEYS = ("data.data_dir", "data.manual_dir", "data.streaming", "data.resident_max_mb")


@dataclasses.dataclass
class PretrainStats:
    """Where the time went, written to pretrain_metrics.json."""

    source: str
    backend: str
    device_kind: str
    num_devices: int
    num_pairs: int
    compile_s: float = 0.0
    train_s: float = 0.0
    train_pairs: int = 0

    @property
    def pairs_per_s(self) -> float:
        return self.train_pairs / self.train_s if self.train_s else 0.0


def make_data_mesh(data_devices: int) -> Mesh:
    """All devices (or the first `data_devices`) on one `data` axis."""
    devices = jax.devices()
    count = data_devices if data_devices > 0 else len(devices)
    if count > len(devices):
        raise UserError(f"engine.mesh_data_devices={count} but only {len(devices)} devices exist.")
    return Mesh(np.asarray(devices[:count]), ("data",), axis_types=(AxisType.Auto,))


class PretrainRun:
    """One configured MA2MI pre-training run, in one workdir."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
        self.config = config
        self.workdir = pathlib.Path(workdir)
        train = config.train
        if (
            train.steps <= 0
            or train.steps % train.log_every
            or train.checkpoint_every % train.log_every
        ):
            raise UserError(
                f"train.steps={train.steps} and train.checkpoint_every={train.checkpoint_every} "
                f"must be positive multiples of train.log_every={train.log_every}."
            )
        self.mesh = make_data_mesh(config.engine.mesh_data_devices)
        # At least 2 pairs a device: with a single one, XLA:CPU (jax 0.12, 8 host devices)
        # returned NaN gradients for the first action block, while 2+ matched the
        # one-device gradients to 1e-6.
        if train.batch_size % self.mesh.size or train.batch_size < 2 * self.mesh.size:
            raise UserError(
                f"train.batch_size={train.batch_size} must be a multiple of the {self.mesh.size} "
                "devices on the data axis, at least 2 pairs per device (each gets an equal "
                "share)."
            )
        self.builder = data_builders.build(
            config.data.name,
            data_dir=pathlib.Path(config.data.data_dir).expanduser(),
            manual_dir=config.data.get("manual_dir"),
            config=config.data.get("builder_config"),
            overrides=dict(config.data.get("overrides") or {}),
        )
        self.excluded = {str(s) for s in config.data.exclude_subjects}
        metadata = self.builder.info.metadata
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
        self.model_kwargs = {k: v for k, v in config.model.items() if k != "name"}
        dtype = jnp.dtype(config.engine.compute_dtype)
        self.create = lambda key: ma2mi.MA2MI(rngs=nnx.Rngs(key), dtype=dtype, **self.model_kwargs)
        abstract = nnx.eval_shape(lambda: self.create(jax.random.key(0)))
        self.graphdef = nnx.split(abstract, nnx.Param, ...)[0]
        self.fields = tuple(abstract.fields)
        self.tx = optim.make_optimizer(train)
        self.streaming = self._resolve_streaming()
        self.replicated = NamedSharding(self.mesh, PartitionSpec())
        self.split_batch = NamedSharding(self.mesh, PartitionSpec("data"))
        self.stats = PretrainStats(
            source="grain" if self.streaming else "resident",
            backend=jax.default_backend(),
            device_kind=jax.devices()[0].device_kind,
            num_devices=self.mesh.size,
            num_pairs=self.corpus["num_pairs"],
        )
        self._step_fns = self._build_steps()

    def _resolve_streaming(self) -> bool:
        choice = self.config.data.streaming
        if choice not in ("auto", "resident", "grain"):
            raise UserError(f"Unknown data.streaming {choice!r}; use auto, resident or grain.")
        if choice == "auto":
            size_mb = data_builders.macro_corpus_bytes(self.builder) / 2**20
            return size_mb > self.config.data.resident_max_mb
        return choice == "grain"

    # -- pure functions ---------------------------------------------------------

    def _build_steps(self) -> dict[str, Any]:
        graphdef, tx, fields = self.graphdef, self.tx, self.fields
        batch_size, seed = self.config.train.batch_size, self.config.seed

        def init() -> dict[str, Any]:
            _, params, rest = nnx.split(self.create(jax.random.key(seed)), nnx.Param, ...)
            return {"params": params, "rest": rest, "opt_state": tx.init(params)}

        def update(state, batch, key):
            def loss_fn(params):
                # copy=True: BatchNorm updates inside jax.grad must not alias the outer state.
                model = nnx.merge(graphdef, params, state["rest"], copy=True)
                outputs = model(model.prepare(batch, key, train=True), train=True)
                loss, terms = model.loss(outputs)
                _, _, rest = nnx.split(model, nnx.Param, ...)
                return loss, (rest, {"loss": loss, **terms})

            grads, (rest, metrics) = jax.grad(loss_fn, has_aux=True)(state["params"])
            updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
            params = optax.apply_updates(state["params"], updates)
            return {"params": params, "rest": rest, "opt_state": opt_state}, metrics

        def resident_step(state, data, pool, step):
            sample_key, prepare_key = jax.random.split(
                jax.random.fold_in(jax.random.key(seed), step)
            )
            idx = pool[jax.random.randint(sample_key, (batch_size,), 0, pool.shape[0])]
            # Each device gathers and trains on its own share of the batch.
            idx = jax.lax.with_sharding_constraint(idx, self.split_batch)
            return update(state, {f: data[f][idx] for f in fields}, prepare_key)

        def streamed_step(state, batch, step):
            return update(state, batch, jax.random.fold_in(jax.random.key(seed + 1), step))

        def reconstruct(state, batch):
            model = nnx.merge(graphdef, state["params"], state["rest"])
            outputs = model(model.prepare(batch, jax.random.key(0), train=False), train=False)
            loss, terms = model.loss(outputs)
            return outputs, {"loss": loss, **terms}

        return {
            "init": jax.jit(init, out_shardings=self.replicated),
            "resident": jax.jit(resident_step, donate_argnums=0),
            "streamed": jax.jit(streamed_step, donate_argnums=0),
            "reconstruct": jax.jit(reconstruct),
        }

    # -- corpus access --------------------------------------------------------

    def _resident_corpus(self) -> tuple[dict[str, jax.Array], jax.Array, dict[str, np.ndarray]]:
        examples = data_builders.load_examples(self.builder)
        keep = np.flatnonzero(~np.isin(examples["subject"].astype(str), list(self.excluded)))
        data = jax.device_put({f: examples[f] for f in self.fields}, self.replicated)
        pool = jax.device_put(keep.astype(np.int32), self.replicated)
        return data, pool, {f: examples[f][keep] for f in self.fields}

    def _grain_batches(self, start_step: int) -> Iterator[dict[str, np.ndarray]]:
        """Shuffled, endless batches of pairs, read and decoded ahead by threads.

        A resumed run reshuffles from its step (another order, same distribution)
        rather than replaying the reads it had done.
        """
        excluded, fields = self.excluded, self.fields
        dataset = (
            grain.MapDataset.source(data_builders.pair_source(self.builder))
            .seed(self.config.seed * 100_003 + start_step)
            .shuffle()
            .repeat()
            .to_iter_dataset(
                grain.ReadOptions(
                    num_threads=self.config.data.grain_threads,
                    prefetch_buffer_size=4 * self.config.train.batch_size,
                )
            )
            .filter(lambda pair: str(_text(pair["subject"])) not in excluded)
            .map(lambda pair: {f: pair[f] for f in fields})
            .batch(self.config.train.batch_size, drop_remainder=True)
        )
        return iter(dataset)

    def _fixed_pairs(self, count: int) -> dict[str, np.ndarray]:
        """`count` pairs spread evenly over the corpus (not excluded), for figures and eval."""
        source = data_builders.pair_source(self.builder)
        indices = np.linspace(0, len(source) - 1, num=min(len(source), 4 * count)).astype(int)
        pairs = [source[int(i)] for i in indices]
        pairs = [p for p in pairs if str(_text(p["subject"])) not in self.excluded][:count]
        return {f: np.stack([p[f] for p in pairs]) for f in self.fields}

    # -- the run ----------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Trains (or resumes), then writes the figure, the metrics and the exported branches."""
        config = self.config
        self._check_workdir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        resolved = json.loads(config.to_json_best_effort())
        (self.workdir / "config.json").write_text(json.dumps(resolved, indent=2, sort_keys=True))
        (self.workdir / CORPUS_JSON).write_text(json.dumps(self.corpus, indent=2))

        ckpt = checkpoint.ChunkCheckpointer(self.workdir / "checkpoints" / "pretrain")
        meta: dict[str, Any] = {"model": "ma2mi", "history": {"step": []}}
        step = ckpt.latest_step() or 0
        if step:
            state, meta = ckpt.restore(step, self._abstract_state())
        else:
            state = self._step_fns["init"]()
        if self.streaming:
            batches = self._grain_batches(step)
        else:
            data, pool, _ = self._resident_corpus()

        steps, log_every = config.train.steps, config.train.log_every
        writer = SummaryWriter(str(self.workdir / "tensorboard"))
        with tqdm.tqdm(total=steps, initial=step, unit="step", desc="MA2MI pre-training") as bar:
            while step < steps:
                tic = time.perf_counter()
                per_step = []
                for current in range(step, step + log_every):
                    at = jax.device_put(np.int32(current), self.replicated)
                    if self.streaming:
                        # The one deliberate host->device copy of a step: its batch.
                        batch = jax.device_put(next(batches), self.split_batch)
                        state, metrics = self._run("streamed", state, batch, at)
                    else:
                        state, metrics = self._run("resident", state, data, pool, at)
                    per_step.append(metrics)
                metrics = {
                    k: float(np.mean([m[k] for m in jax.device_get(per_step)])) for k in per_step[0]
                }
                self.stats.train_s += time.perf_counter() - tic
                self.stats.train_pairs += log_every * config.train.batch_size
                step += log_every
                meta["history"]["step"].append(step)
                for name, value in metrics.items():
                    meta["history"].setdefault(name, []).append(value)
                    writer.add_scalar(f"pretrain/{name}", value, step)
                bar.update(log_every)
                bar.set_postfix(loss=f"{metrics['loss']:.4f}")
                if step % config.train.checkpoint_every == 0 or step == steps:
                    ckpt.save(step, state, meta)
        writer.close()
        ckpt.close()
        return self._finish(state, meta["history"])

    def _run(self, name: str, *args: Any) -> Any:
        """Runs a step function under the transfer guard: everything it needs is already on
        the devices, so a hidden host<->device copy would be a bug (and slow). Its first
        call compiles it (tracing may make constants), counted apart from training."""
        function = self._step_fns[name]
        if not isinstance(function, jax.stages.Compiled):
            tic = time.perf_counter()
            function = self._step_fns[name] = function.lower(*args).compile()
            self.stats.compile_s += time.perf_counter() - tic
        with jax.transfer_guard(self.config.engine.transfer_guard):
            return function(*args)

    def evaluate(self) -> dict[str, Any]:
        """Restores the final checkpoint and rewrites every output of `train`."""
        ckpt = checkpoint.ChunkCheckpointer(
            self.workdir / "checkpoints" / "pretrain", async_save=False
        )
        step = ckpt.latest_step()
        if step is None:
            raise UserError(
                f"No pre-training checkpoint in {self.workdir / 'checkpoints'}: run with "
                "--mode=train first."
            )
        state, meta = ckpt.restore(step, self._abstract_state())
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
        batch = jax.device_put({f: v[:usable] for f, v in pairs.items()}, self.split_batch)
        outputs, terms = jax.device_get(self._step_fns["reconstruct"](state, batch))
        shown = slice(0, _FIGURE_PAIRS)
        ma2mi.reconstruction_figure(
            pairs[self.fields[0]][shown],
            outputs["target"][shown],
            outputs["reconstruction"][shown],
            self.workdir / FIGURE_PNG,
        )
        pretrained.export(
            self.workdir,
            state["params"],
            state["rest"],
            branches=miacnet.SHARED_BRANCHES,
            branch_config=models.constructor_settings(
                ma2mi.MA2MI, self.config.model, miacnet.BRANCH_KEYS
            ),
            corpus=self.corpus,
        )
        metrics = {
            "steps": history["step"][-1] if history["step"] else 0,
            "final_train": {k: v[-1] for k, v in history.items() if k != "step" and v},
            "fixed_pairs_eval": {k: float(v) for k, v in terms.items()},
            "fixed_pairs": usable,
            **dataclasses.asdict(self.stats),
            "pairs_per_s": self.stats.pairs_per_s,
            # Each pair is two frames: the throughput in frames the corpus is read at.
            "frames_per_s": 2 * self.stats.pairs_per_s,
            "corpus": {k: v for k, v in self.corpus.items() if k != "subjects"},
            "num_subjects": len(self.corpus["subjects"]),
        }
        (self.workdir / METRICS_JSON).write_text(json.dumps(metrics, indent=2))
        return metrics

    def _check_workdir(self) -> None:
        """Refuses a workdir whose checkpoint comes from another experiment."""
        saved = self.workdir / "config.json"
        if not saved.exists() or not (self.workdir / "checkpoints").is_dir():
            return
        before = json.loads(saved.read_text())
        now = json.loads(self.config.to_json_best_effort())
        if before.get("task") != "pretrain":
            raise UserError(
                f"Workdir {self.workdir} holds a {before.get('task', 'loso')!r} run, not a "
                "pre-training; use another --workdir."
            )
        changed = [
            key
            for section in _RUN_DEFINING_SECTIONS
            for key in engine.diff_keys(before.get(section), now.get(section), section)
            if key not in _LOCATION_KEYS
        ]
        if changed:
            raise UserError(
                f"Workdir {self.workdir} holds a pre-training with other settings "
                f"({', '.join(changed)} differ from its config.json). Use another --workdir, "
                "or rerun with the settings of config.json."
            )


def summarize(metrics: dict[str, Any], workdir: pathlib.Path) -> str:
    """The lines printed at the end of a pre-training run."""
    final = metrics["fixed_pairs_eval"]
    terms = ", ".join(f"{k} {v:.4f}" for k, v in final.items())
    return (
        f"MA2MI pre-training: {metrics['steps']} steps on {metrics['num_pairs']} pairs of "
        f"{metrics['num_subjects']} subjects ({metrics['source']}); reconstruction on "
        f"{metrics['fixed_pairs']} fixed pairs: {terms}; {metrics['frames_per_s']:.0f} frames/s "
        f"on {metrics['num_devices']} {metrics['backend']} device(s). Branches for "
        f"--config.init_from={workdir}"
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
