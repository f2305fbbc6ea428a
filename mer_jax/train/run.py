"""The skeleton every run of launch.py shares: LOSO training and MA2MI pre-training.

A run owns one workdir. In order, it
1. refuses a workdir whose checkpoints belong to another experiment (`check_workdir`);
2. writes the resolved `config.json` (so an interrupted run is checked when it resumes);
3. trains from its latest checkpoint in dispatches of `engine.steps_per_dispatch` steps:
   each dispatch runs on the device without a host round trip (the subclass's
   `dispatch`, under `jax.transfer_guard`), then the host records the curves
   (checkpoint meta, TensorBoard, progress bar) and saves a checkpoint when one is due
   (`train_loop`);
4. writes its outputs (the subclass).

`make_update` is the one optimisation step of every model: prepare the batch, run the
model, score it, apply the optimizer. The two runs differ only in what a step sees: a
LOSO replica gathers its own fold's training samples (`engine`), pre-training a batch of
frame pairs split over the devices (`pretraining`).
"""

import abc
import dataclasses
import json
import pathlib
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

from mer_jax.errors import UserError
from mer_jax.train import checkpoint

CONFIG_JSON = "config.json"
CHECKPOINTS = "checkpoints"
# Config sections whose change makes an existing workdir's checkpoints meaningless.
RUN_DEFINING_SECTIONS = ("task", "data", "model", "train", "seeds", "init_from")

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

    @property
    def samples_per_s(self) -> float:
        return self.train_samples / self.train_s if self.train_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "samples_per_s": self.samples_per_s}


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
    # Keys of the run-defining sections that may change between a run and its resume:
    # where the data lives (a moved cache holds the same build) and how it is read.
    LOCATION_KEYS: ClassVar[tuple[str, ...]] = ("data.data_dir", "data.manual_dir")

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
        self.config = config
        self.workdir = pathlib.Path(workdir)
        steps, per_dispatch = config.train.steps, config.engine.steps_per_dispatch
        if per_dispatch <= 0 or steps <= 0 or steps % per_dispatch:
            raise UserError(
                f"train.steps={steps} must be a positive multiple of "
                f"engine.steps_per_dispatch={per_dispatch}."
            )
        if config.train.checkpoint_every % per_dispatch:
            raise UserError(
                f"train.checkpoint_every={config.train.checkpoint_every} must be a multiple of "
                f"engine.steps_per_dispatch={per_dispatch} (checkpoints are taken between "
                "dispatches)."
            )

    # -- the workdir --------------------------------------------------------------------

    @property
    def checkpoint_root(self) -> pathlib.Path:
        return self.workdir / CHECKPOINTS

    def check_workdir(self) -> None:
        """Refuses a workdir whose checkpoints come from a different experiment."""
        saved = self.workdir / CONFIG_JSON
        root = self.checkpoint_root
        if not saved.exists() or not (root.is_dir() and any(root.iterdir())):
            return
        before = json.loads(saved.read_text())
        now = json.loads(self.config.to_json_best_effort())
        task_before = before.get("task", "loso")
        if task_before != self.TASK:
            raise UserError(
                f"Workdir {self.workdir} holds a {task_before!r} run, not a {self.TASK!r} "
                "run; use another --workdir."
            )
        name_before = before.get("model", {}).get("name")
        if name_before != now["model"]["name"]:
            raise UserError(
                f"Workdir {self.workdir} holds checkpoints of model {name_before!r}, but the "
                f"config trains {now['model']['name']!r}. Use another --workdir, or delete "
                f"{root}."
            )
        changed = [
            key
            for section in RUN_DEFINING_SECTIONS
            for key in diff_keys(before.get(section), now.get(section), section)
            if key not in self.LOCATION_KEYS
        ]
        if changed:
            raise UserError(
                f"Workdir {self.workdir} holds checkpoints of a run with other settings "
                f"({', '.join(changed)} differ from its {CONFIG_JSON}). Use another --workdir "
                f"to train this config, or rerun with the settings of {CONFIG_JSON}."
            )

    def write_config(self) -> None:
        """Checks the workdir, then writes the resolved config into it."""
        self.check_workdir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        resolved = json.loads(self.config.to_json_best_effort())
        (self.workdir / CONFIG_JSON).write_text(json.dumps(resolved, indent=2, sort_keys=True))

    def writer(self) -> SummaryWriter:
        """The run's TensorBoard writer (`tensorboard --logdir runs/`)."""
        return SummaryWriter(str(self.workdir / "tensorboard"))

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
        writer: SummaryWriter,
        tag: str,
        rows: int | None = None,
    ) -> State:
        """Trains from `step` to `train.steps`, one dispatch at a time.

        Args:
            state: the training state at `step`.
            step: where training starts (0, or a resumed checkpoint's step).
            dispatch: runs the `engine.steps_per_dispatch` steps after a given step on the
                device; returns the new state and the dispatch's mean metrics on the host
                (one value per stacked replica, or scalars).
            checkpointer: where `state` and `meta` are saved when a checkpoint is due.
            meta: saved with the state; its "history" receives the curves.
            stats: receives the time and samples trained.
            samples_per_dispatch: samples one dispatch trains on (for samples/s).
            bar, writer, tag: progress bar, TensorBoard writer and its scalars' prefix.
            rows: the replicas that are real when metrics are stacked (padding rows
                repeat a replica and are left out); None for scalar metrics.

        Returns:
            The state after the last step.
        """
        config = self.config
        steps, per_dispatch = config.train.steps, config.engine.steps_per_dispatch
        while step < steps:
            tic = time.perf_counter()
            state, metrics = dispatch(state, step)
            stats.train_s += time.perf_counter() - tic
            stats.train_samples += samples_per_dispatch
            step += per_dispatch
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
                {k: f"{shown[k]:.4f}" for k in ("loss", "accuracy") if k in shown}, refresh=False
            )
            if step % config.train.checkpoint_every == 0 or step == steps:
                checkpointer.save(step, state, meta)
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
