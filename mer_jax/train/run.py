"""The skeleton every run of launch.py shares: LOSO training and MA2MI pre-training.

A run owns one workdir. In order:
1. before any data is loaded, launch.py locks the workdir (`lock_workdir`: a second run
   on it is refused, saying who holds it) and checks it (`check_workdir`): a workdir
   whose checkpoints belong to another experiment or another engine layout is refused
   before anything is overwritten; `--mode=eval` needs finished checkpoints;
2. the run writes the resolved `config.json`, atomically, once its own checks passed;
3. it trains from its latest intact checkpoint in dispatches of
   `engine.steps_per_dispatch` steps: each dispatch runs on the device without a host
   round trip (the subclass's `dispatch`, under `jax.transfer_guard`), then the host
   checks the loss is finite, records the curves (checkpoint meta, TensorBoard,
   progress bar) and saves a checkpoint when one is due (`train_loop`); SIGINT/SIGTERM
   stop it at that point, after a checkpoint;
4. it writes its outputs (the subclass).

`make_update` is the one optimisation step of every model: prepare the batch, run the
model, score it, apply the optimizer. The two runs differ only in what a step sees: a
LOSO replica gathers its own fold's training samples (`engine`), pre-training a batch of
frame pairs split over the devices (`pretraining`).
"""

import abc
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm
from flax import nnx
from jax.sharding import AxisType, Mesh
from tensorboardX import SummaryWriter

from mer_jax import checkpoint, guards, hosts
from mer_jax.errors import DivergedError, UserError
from mer_jax.train import validation
from mer_jax.workdir import (
    CHECKPOINTS,
    CONFIG_JSON,
    DAMAGED,
    LOCK_FILE,
    TENSORBOARD,
    grid_values,
    has_checkpoints,
    read_json,
)

# Config sections whose change makes an existing workdir's checkpoints meaningless.
RUN_DEFINING_SECTIONS = ("task", "data", "model", "train", "seeds", "init_from", "tune")

Metrics = dict[str, np.ndarray]
State = dict[str, Any]


def make_mesh(devices: Sequence[jax.Device], axis: str) -> Mesh:
    """A ('fold', 'data') mesh with all `devices` on `axis` and 1 on the other.

    LOSO stacks replicas over the `fold` axis; pre-training splits its batches over the
    `data` axis.
    """
    shape = (len(devices), 1) if axis == "fold" else (1, len(devices))
    grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, ("fold", "data"), axis_types=(AxisType.Auto, AxisType.Auto))


def run_devices(engine: ml_collections.ConfigDict) -> list[jax.Device]:
    """The first `engine.devices` devices (-1: all of them)."""
    devices = jax.devices()
    count = engine.devices if engine.devices > 0 else len(devices)
    if count > len(devices):
        raise UserError(f"engine.devices={count}, but only {len(devices)} devices exist here.")
    return devices[:count]


def make_update(graphdef: nnx.GraphDef, tx: optax.GradientTransformation) -> Callable[..., Any]:
    """One optimisation step of any model: `update(state, batch, labels, prepare_key,
    dropout_key) -> (state, metrics)`.

    `state` holds "params", "rest" (other model state, e.g. BatchNorm statistics) and
    "opt_state"; `labels` is None for pre-training. Metrics: "loss", "accuracy" (of a
    classifier) and the model's named loss terms.
    """

    def update(state, batch, labels, prepare_key, dropout_key):
        def loss_fn(params):
            # copy=True: the merged module must not alias the outer state, or updating
            # BatchNorm statistics inside jax.grad mutates it from another trace level.
            model = nnx.merge(graphdef, params, state["rest"], copy=True)
            inputs = model.prepare(batch, prepare_key, train=True)
            outputs = model(inputs, train=True, key=dropout_key)
            loss, terms = model.loss(outputs, labels)
            metrics = {"loss": loss}
            if labels is not None:
                metrics["accuracy"] = jnp.mean(jnp.argmax(outputs["logits"], -1) == labels)
            _, _, rest = nnx.split(model, nnx.Param, ...)
            return loss, (rest, {**metrics, **terms})

        grads, (rest, metrics) = jax.grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "rest": rest, "opt_state": opt_state}, metrics

    return update


@dataclasses.dataclass
class RunStats:
    """Where a run's time went (written with its outputs)."""

    backend: str
    device_kind: str
    num_devices: int
    compile_s: float = 0.0
    train_s: float = 0.0
    train_samples: int = 0
    # Of train_samples, those trained by earlier (interrupted) processes of this run.
    restored_samples: int = 0

    @property
    def samples_per_s(self) -> float:
        return self.train_samples / self.train_s if self.train_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "samples_per_s": self.samples_per_s}


def _model_fields(model: Any) -> Any:
    """A config.json model section with every field of its model, at the constructor's
    default where the section leaves it out (`models.config_fields`): a config that
    spells a default out and one that leaves it to the constructor train the same model,
    so neither refuses the other's workdir."""
    from mer_jax import models

    cls = models.MODELS.get(model.get("name")) if isinstance(model, dict) else None
    if cls is None:
        return model
    defaults = {name: default for name, (default, _) in models.config_fields(cls).items()}
    # As config.json holds them: tuples as lists.
    return {**json.loads(json.dumps(defaults)), **model}


# Settings added after workdirs were trained, each at the value that trains as those runs
# did: a config.json that predates one still describes the same run (resumed, re-read).
SETTINGS_ADDED: dict[str, dict[str, Any]] = {
    "train": {"sampling": "uniform", "weight_decay_on": "all"},
}


def diff_keys(before: Any, now: Any, prefix: str) -> list[str]:
    """The dotted keys under `prefix` whose values differ between two config JSONs."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [
            key
            for name in sorted(set(before) | set(now))
            for key in diff_keys(before.get(name), now.get(name), f"{prefix}.{name}")
        ]
    return [] if before == now else [prefix]


class TrainingRun(abc.ABC):
    """One configured run in one workdir; `engine.LosoRun` and
    `pretraining.PretrainingRun` are its two specialisations."""

    TASK: ClassVar[str]
    # The kind of dataset the run reads (`data_builders.check`): "clips", "pairs", "videos".
    DATA_KIND: ClassVar[str] = "clips"
    # Keys of the run-defining sections that may change between a run and its resume:
    # where the data lives (a moved cache holds the same build) and how it is read.
    LOCATION_KEYS: ClassVar[tuple[str, ...]] = ("data.data_dir", "data.manual_dir")
    # Engine settings that shape the checkpoints (how replicas are stacked): a resume
    # must keep them.
    LAYOUT_KEYS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
        validation.check_config(config)
        self.config = config
        self.workdir = pathlib.Path(workdir)
        # Process 0 writes the shared outputs; every process writes its checkpoint shards.
        self.primary = hosts.is_primary()

    # -- the workdir, before anything is loaded ----------------------------------------

    @staticmethod
    def lock_workdir(workdir: pathlib.Path) -> guards.FileLock:
        """The workdir's exclusive lock (take it with `with`); creates the workdir."""
        guards.check_writable(workdir, "--workdir")
        workdir.mkdir(parents=True, exist_ok=True)
        return guards.FileLock(workdir / LOCK_FILE, f"workdir {workdir}")

    @classmethod
    def check_workdir(
        cls, config: ml_collections.ConfigDict, workdir: pathlib.Path, mode: str
    ) -> None:
        """Refuses a workdir whose checkpoints come from a different experiment or engine
        layout, and an evaluation without checkpoints; reads nothing but the workdir."""
        if mode == "eval" and not has_checkpoints(workdir):
            raise UserError(
                f"No checkpoints in {workdir / CHECKPOINTS}: --mode=eval needs a finished "
                "training run in this workdir (run with --mode=train first)."
            )
        if not has_checkpoints(workdir):
            return
        if not (workdir / CONFIG_JSON).exists():
            raise UserError(
                f"{workdir} holds checkpoints but no {CONFIG_JSON} saying what they are; use "
                "another --workdir (or delete its checkpoints to train from scratch)."
            )
        before = read_json(
            workdir / CONFIG_JSON, f"it describes the checkpoints in {workdir / CHECKPOINTS}"
        )
        now = json.loads(config.to_json_best_effort())
        for side in (before, now):
            if "model" in side:
                side["model"] = _model_fields(side["model"])
        for section, added in SETTINGS_ADDED.items():
            if isinstance(before.get(section), dict):
                before[section] = {**added, **before[section]}
        task_before = before.get("task", "loso")
        if task_before != cls.TASK:
            raise UserError(
                f"Workdir {workdir} holds a {task_before!r} run, not a {cls.TASK!r} run; use "
                "another --workdir."
            )
        name_before = before.get("model", {}).get("name")
        if name_before != now["model"]["name"]:
            raise UserError(
                f"Workdir {workdir} holds checkpoints of model {name_before!r}, but the config "
                f"trains {now['model']['name']!r}. Use another --workdir, or delete "
                f"{workdir / CHECKPOINTS}."
            )
        # A tuned setting's value outside the grid trains nothing (every run under the
        # grid sets it), so a config that has since moved it describes the same run; a
        # changed grid is itself a change of `tune`.
        tuned = set(grid_values(config))
        changed = [
            key
            for section in RUN_DEFINING_SECTIONS
            for key in diff_keys(before.get(section), now.get(section), section)
            if key not in cls.LOCATION_KEYS and key not in tuned
        ]
        if changed:
            raise UserError(
                f"Workdir {workdir} holds checkpoints of a run with other settings "
                f"({', '.join(changed)} differ from its {CONFIG_JSON}). Use another --workdir "
                f"to train this config, or rerun with the settings of {CONFIG_JSON}."
            )
        layout = [
            f"{key}={_dotted(before, key)!r} (here {_dotted(now, key)!r})"
            for key in cls.LAYOUT_KEYS
            if _dotted(before, key) != _dotted(now, key)
        ]
        if layout:
            raise UserError(
                f"Workdir {workdir} was trained with another engine layout: {', '.join(layout)}. "
                "Resume with the settings of its config.json (e.g. "
                + " ".join(f"--config.{k}={_dotted(before, k)!r}" for k in cls.LAYOUT_KEYS)
                + "), or use another --workdir."
            )

    def write_config(self) -> None:
        """Writes the resolved config into the workdir, atomically (process 0)."""
        if not self.primary:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        resolved = json.loads(self.config.to_json_best_effort())
        guards.atomic_write_text(
            self.workdir / CONFIG_JSON, json.dumps(resolved, indent=2, sort_keys=True)
        )

    @property
    def checkpoint_root(self) -> pathlib.Path:
        return self.workdir / CHECKPOINTS

    def restore_latest(
        self, ckpt: checkpoint.Checkpointer, abstract_state: Any
    ) -> tuple[int, Any, dict[str, Any] | None]:
        """The newest intact checkpoint of `ckpt` (damaged steps are set aside, noted)."""
        # Several processes share the folder: none moves a damaged step alone.
        set_aside = self.workdir / DAMAGED if jax.process_count() == 1 else None
        step, state, meta, notes = ckpt.restore_latest(abstract_state, set_aside)
        for note in notes:
            tqdm.tqdm.write(f"note: {note}", file=sys.stderr)
        return step, state, meta

    def writer(self, subfolder: str = "", purge_step: int | None = None) -> Any:
        """A TensorBoard writer (`tensorboard --logdir runs/`); `purge_step`: a resumed
        run's step, so that the curves of the interrupted process after it are dropped.
        Other processes than 0 get one that writes nothing."""
        if not self.primary:
            return _NoWriter()
        return SummaryWriter(str(self.workdir / TENSORBOARD / subfolder), purge_step=purge_step)

    # -- training -----------------------------------------------------------------------

    def train_loop(
        self,
        *,
        state: State,
        step: int,
        dispatch: Callable[[State, int], tuple[State, Metrics]],
        checkpointer: checkpoint.Checkpointer,
        meta: dict[str, Any],
        stats: RunStats,
        samples_per_dispatch: int,
        bar: tqdm.tqdm,
        writer: SummaryWriter | None,
        tag: str,
        row_names: Sequence[str] | None = None,
    ) -> State:
        """Trains from `step` to `train.steps`, one dispatch at a time.

        Args:
            state: the training state at `step`.
            step: where training starts (0, or a resumed checkpoint's step).
            dispatch: runs the `engine.steps_per_dispatch` steps after a given step on the
                device; returns the new state and the dispatch's mean metrics on the host
                (one value per stacked replica, or scalars).
            checkpointer: where `state` and `meta` are saved when a checkpoint is due.
            meta: saved with the state; its "history" receives the curves and its
                "timing" the time and samples of every process that trained it.
            stats: receives the time and samples trained (those of earlier processes
                from `meta`, at once).
            samples_per_dispatch: samples one dispatch trains on (for samples/s).
            bar, writer, tag: progress bar, TensorBoard writer (None when nothing is left
                to train) and its scalars' prefix.
            row_names: when metrics are stacked, the name of each real replica, e.g.
                "fold 3 (casme2/sub04), seed 1" (padding rows after them are left out);
                None for scalar metrics.

        Returns:
            The state after the last step.

        Raises:
            DivergedError: a non-finite loss (the replica and the step are named).
            guards.Interrupted: SIGINT/SIGTERM, after a checkpoint of the last dispatch.
        """
        config = self.config
        steps, per_dispatch = config.train.steps, config.engine.steps_per_dispatch
        rows = None if row_names is None else len(row_names)
        timing = meta.setdefault("timing", {"compile_s": 0.0, "train_s": 0.0, "train_samples": 0})
        stats.compile_s += timing["compile_s"]
        stats.train_s += timing["train_s"]
        stats.train_samples += timing["train_samples"]
        stats.restored_samples += timing["train_samples"]
        saved = step
        # A signal now only asks to stop; the loop stops after the dispatch in flight,
        # with a checkpoint (a second signal stops at once).
        with guards.STOP.deferred():
            while step < steps:
                tic = time.perf_counter()
                state, metrics = dispatch(state, step)
                elapsed = time.perf_counter() - tic
                stats.train_s += elapsed
                stats.train_samples += samples_per_dispatch
                timing["train_s"] += elapsed
                timing["train_samples"] += samples_per_dispatch
                step += per_dispatch
                _check_finite(metrics["loss"], step, per_dispatch, row_names, saved)
                shown = {}
                history = meta["history"]
                history["step"].append(step)
                for name, values in metrics.items():
                    values = np.asarray(values) if rows is None else np.asarray(values)[:rows]
                    history.setdefault(name, []).append(
                        float(values) if rows is None else [float(v) for v in values]
                    )
                    shown[name] = float(np.mean(values))
                    writer.add_scalar(f"{tag}/{name}", shown[name], step)
                bar.update(per_dispatch)
                bar.set_postfix(
                    {k: f"{shown[k]:.4f}" for k in ("loss", "accuracy") if k in shown},
                    refresh=False,
                )
                stopping = guards.STOP.requested is not None
                if step % config.train.checkpoint_every == 0 or step == steps or stopping:
                    checkpointer.save(step, state, meta)
                    saved = step
                if stopping:
                    raise guards.Interrupted(guards.STOP.requested, f" at step {step} ({tag})")
        return state

    @abc.abstractmethod
    def train(self) -> dict[str, Any]:
        """Trains (or resumes), then writes the outputs; returns the metrics."""

    @abc.abstractmethod
    def evaluate(self) -> dict[str, Any]:
        """Restores the final checkpoint(s) and rewrites the outputs; returns the metrics."""

    @abc.abstractmethod
    def summarize(self, metrics: dict[str, Any]) -> str:
        """The lines printed at the end of the run."""


class _NoWriter:
    """The TensorBoard writer of a process other than 0: the curves are written once."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs

    def close(self) -> None:
        pass


def _dotted(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _check_finite(
    losses: Any, step: int, per_dispatch: int, row_names: Sequence[str] | None, saved: int
) -> None:
    """Raises DivergedError when a replica's (or the model's) loss is not finite."""
    values = np.atleast_1d(np.asarray(losses, np.float64))
    if row_names is not None:
        values = values[: len(row_names)]
    bad = np.flatnonzero(~np.isfinite(values))
    if not len(bad):
        return
    who = (
        "the loss"
        if row_names is None
        else "the loss of "
        + ", ".join(row_names[i] for i in bad[:4])
        + (f" and {len(bad) - 4} more replicas" if len(bad) > 4 else "")
    )
    raise DivergedError(
        f"training diverged: {who} is {values[bad[0]]} in steps {step - per_dispatch + 1}-{step}; "
        "no metrics are reported from it. Lower train.learning_rate (or set train.grad_clip) "
        f"and train in a new --workdir (this one's last checkpoint is from step {saved})."
    )
