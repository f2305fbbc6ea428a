"""A run's workdir: the one module that knows its layout, reads what a run left there and
restores its trained replicas (for `--mode eval`, predict and export).

    W/
      .lock                    held while a process works in W (`guards.FileLock`)
      config.json              the resolved config, written once the run's checks passed
      dataset.json             what a LOSO run's models were trained on (`TrainedBuild`)
      checkpoints/             chunk_NNN/: one chunk of stacked (fold, seed) replicas;
                               under nested selection inner_gNN/chunk_NNN/ and
                               outer_gNN/chunk_NNN/: grid point NN's inner and outer runs;
                               pretrain/: MA2MI pre-training
      checkpoints_damaged/     damaged checkpoint steps, set aside, never deleted
      metrics.json, predictions.csv, confusion_matrix.png, curves.png   the evaluation
      tuning.csv               every inner score of nested selection
      timing.json              where the time went
      tensorboard/             the curves
      predictions_new.csv, export/   written by --mode predict and --mode export

A replica is one (fold, seed) training run; its randomness derives from (seed, fold)
alone (`replica_key`), so a restored replica predicts as it did when it was trained.
Nested selection's grid (`config.tune.grid`) names the stages: grid point g's outer runs
are `outer_g{g:02d}`, trained with `apply_point(config, grid_points(config)[g])`.
"""

import dataclasses
import itertools
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from mer_jax import checkpoint, export, models
from mer_jax.errors import UserError

CONFIG_JSON = "config.json"
DATASET_JSON = "dataset.json"
METRICS_JSON = "metrics.json"
PREDICTIONS_CSV = "predictions.csv"
TUNING_CSV = "tuning.csv"
TIMING_JSON = "timing.json"
CHECKPOINTS = "checkpoints"
DAMAGED = "checkpoints_damaged"
LOCK_FILE = ".lock"
TENSORBOARD = "tensorboard"
PREDICTIONS_NEW_CSV = "predictions_new.csv"
EXPORT_DIR = "export"

# Dataset fields that are annotations, not pixels: a new clip has none. DeRe-GRL reads
# the AU vector only as the target of its AU loss (its logits never see it), so zeros
# stand in for it.
ANNOTATION_FIELDS = ("action_units", "action_units_known")
# The builder config (or `release` override) of a release's official face crops.
CROPPED_RELEASE = "cropped"


def has_checkpoints(workdir: pathlib.Path) -> bool:
    """Whether any checkpoint folder under W/checkpoints holds anything."""
    root = workdir / CHECKPOINTS
    return root.is_dir() and any(
        folder.is_dir() and any(folder.iterdir()) for folder in root.iterdir()
    )


def finish_command(workdir: pathlib.Path) -> str:
    """What finishes (or resumes) the training of a workdir."""
    return f"`python launch.py --config CONFIG --workdir {workdir}` (CONFIG: its config.json's)"


# ---------------------------------------------------------------------------
# Stages: the configurations a run trains (nested selection's grid).
# ---------------------------------------------------------------------------

Point = dict[str, Any]  # dotted config name -> value


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if hasattr(tree, "items") and not isinstance(tree, (str, bytes)):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def grid_values(config: ml_collections.ConfigDict) -> dict[str, tuple[Any, ...]]:
    """The grid as dotted name -> values to try, sorted by name (empty: no tuning)."""
    grid = config.get("tune", {}).get("grid") or {}
    return {name: tuple(values) for name, values in sorted(_flat(grid).items())}


def grid_points(config: ml_collections.ConfigDict) -> list[Point]:
    """Every combination of the grid's values, in a fixed order (empty: no tuning)."""
    values = grid_values(config)
    if not values:
        return []
    return [dict(zip(values, combo, strict=True)) for combo in itertools.product(*values.values())]


def apply_point(config: ml_collections.ConfigDict, point: Point) -> ml_collections.ConfigDict:
    """A copy of `config` with a grid point's values set (and no grid: it is one run)."""
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for dotted, value in point.items():
            *path, name = dotted.split(".")
            holder = config
            for part in path:
                holder = holder[part]
            holder[name] = value
        config.tune.grid = ml_collections.ConfigDict()
        config.tune.choices_from = None
    return config


def describe(point: Point) -> str:
    """A point as "train.learning_rate=0.003, model.dropout=0.3"."""
    return ", ".join(f"{name}={value!r}" for name, value in point.items())


def inner_folder(point: int) -> str:
    """The checkpoint folder of a grid point's inner runs."""
    return f"inner_g{point:02d}"


def outer_folder(point: int) -> str:
    """The checkpoint folder of the outer runs that chose a grid point."""
    return f"outer_g{point:02d}"


def chunk_directories(root: pathlib.Path) -> list[pathlib.Path]:
    """A stage's chunk folders, in chunk order (none if the stage has not started)."""
    return sorted(root.glob("chunk_*")) if root.is_dir() else []


# ---------------------------------------------------------------------------
# Replicas and chunks: what a checkpoint folder holds.
# ---------------------------------------------------------------------------


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

    @property
    def replica_list(self) -> list[list[int]]:
        """The replicas as a checkpoint's meta lists them: [[fold, seed], ...]."""
        return [[r.fold, r.seed] for r in self.replicas]

    @classmethod
    def from_meta(cls, index: int, meta: dict[str, Any]) -> "Chunk":
        """The chunk a checkpoint's meta describes."""
        return cls(index, tuple(Replica(*r) for r in meta["replicas"]), meta["padded_size"])


def replica_key(replica: Replica) -> jax.Array:
    """A replica's key: all its randomness derives from (seed, fold) and the step."""
    return jax.random.fold_in(jax.random.key(replica.seed), replica.fold)


def replica_keys(replicas: Sequence[Replica]) -> jax.Array:
    """The replicas' keys, stacked."""
    return jnp.stack([replica_key(r) for r in replicas])


# The stream of a replica's key its evaluation draws from (0: init, 1: training steps).
_PREDICT_STREAM = 2


def replica_probabilities(
    graphdef: nnx.GraphDef, params: Any, rest: Any, batch: dict[str, jax.Array], key: jax.Array
) -> jax.Array:
    """One replica's class probabilities on a batch: the engine's evaluation of its test
    subjects and a trained ensemble's prediction are this same function."""
    model = nnx.merge(graphdef, params, rest)
    inputs = model.prepare(batch, jax.random.fold_in(key, _PREDICT_STREAM), train=False)
    logits = model(inputs, train=False)["logits"]
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def check_chunk_meta(
    meta: dict[str, Any], chunk: Chunk, config: ml_collections.ConfigDict, where: Any
) -> None:
    """A checkpoint's meta must be of the config's model and of the chunk's replicas.

    Raises:
        UserError: another model, or another layout of (fold, seed) runs.
    """
    if meta["model"] != config.model.name:
        raise UserError(
            f"{where} holds checkpoints of model {meta['model']!r}, but the config trains "
            f"{config.model.name!r}. Use another --workdir, or delete that checkpoints folder."
        )
    if meta["replicas"] != chunk.replica_list:
        raise UserError(
            f"{where} was trained with another layout of (fold, seed) runs than this run plans "
            "(engine.mode or replicas_per_chunk changed). Resume with the engine settings of "
            f"the original run (see {CONFIG_JSON}), or use another --workdir."
        )


def check_stage_checkpoints(
    root: pathlib.Path, chunks: Sequence[Chunk], config: ml_collections.ConfigDict
) -> None:
    """Refuses a stage's checkpoints stacked otherwise than the run plans (`chunks`),
    before anything is written (a resume on another backend may resolve `auto`
    differently). A damaged meta is passed over: its chunk sets it aside on resuming.

    Raises:
        UserError: a checkpoint folder outside the plan, or of another model or layout.
    """
    planned = {chunk.name: chunk for chunk in chunks}
    for directory in chunk_directories(root):
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
                    f"its {CONFIG_JSON}), or use another --workdir."
                )
            try:
                meta = ckpt.restore_meta(steps[-1])
            except checkpoint.CheckpointDamaged:
                continue
            check_chunk_meta(meta, planned[directory.name], config, directory)
        finally:
            ckpt.close()


def finished_chunk(
    ckpt: checkpoint.Checkpointer, index: int, steps: int, workdir: pathlib.Path
) -> tuple[Chunk, int, dict[str, Any]]:
    """The chunk an open checkpoint folder of `workdir` holds, its final step (which must
    be `steps`) and that step's meta.

    Raises:
        UserError: the folder's training is not finished (named, with what to do).
        CheckpointDamaged: the final step's meta cannot be read.
    """
    step = ckpt.latest_step()
    if step != steps:
        raise UserError(
            f"{ckpt.directory} holds no finished training (step {step} of {steps}); resume "
            f"it with {finish_command(workdir)}."
        )
    meta = ckpt.restore_meta(step)
    return Chunk.from_meta(index, meta), step, meta


# ---------------------------------------------------------------------------
# config.json and dataset.json.
# ---------------------------------------------------------------------------


def read_config(workdir: pathlib.Path, task: str | None = "loso") -> ml_collections.ConfigDict:
    """The config of a workdir's run of `task` (None: of any task).

    Raises:
        UserError: no readable config.json (not a workdir), or a run of another task.
    """
    path = workdir / CONFIG_JSON
    if not path.is_file():
        raise UserError(
            f"{workdir} holds no {CONFIG_JSON}: give the --workdir of a finished training run "
            "(python launch.py --config CONFIG --workdir W)."
        )
    config = ml_collections.ConfigDict(read_json(path, f"it describes the run in {workdir}"))
    if task is not None and config.get("task", "loso") != task:
        raise UserError(
            f"{workdir} holds a {config.get('task', 'loso')!r} run; this needs the workdir of "
            f"a {task!r} run."
        )
    return config


def read_json(path: pathlib.Path, why: str) -> dict[str, Any]:
    """A JSON file of a workdir.

    Raises:
        UserError: unreadable or not JSON, naming the file and `why` it matters.
    """
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(
            f"{path} is unreadable ({type(error).__name__}: {error}); {why}. Restore it, or "
            "use another --workdir."
        ) from None


@dataclasses.dataclass(frozen=True)
class TrainedBuild:
    """What a LOSO workdir records of the data its models were trained on (dataset.json).

    Attributes:
        name: the builder, e.g. "casme2".
        release: the release variant it read ("raw", "cropped"), None for a builder
            that has none (a synthetic database).
        class_names: the run's classes, in label order.
        metadata: the build's metadata (crop_size, flow_size, flow_method, num_frames,
            frames_flow_method, action_units, ...).
        features: feature name -> (per-sample shape, dtype) of the built examples.
    """

    name: str
    release: str | None
    class_names: tuple[str, ...]
    metadata: dict[str, Any]
    features: dict[str, tuple[tuple[int, ...], str]]

    @property
    def face_cropped(self) -> bool:
        """Whether the build read a release's official face crops (only resized)."""
        return self.release == CROPPED_RELEASE


def dataset_record(dataset: Any) -> dict[str, Any]:
    """dataset.json's content for a loaded `MERDataset`: the build's name, metadata (crop
    and flow sizes, flow methods, T stored frames, ...), the run's class names and the
    shape and dtype of one sample of each feature: what a new clip's preprocessing, the
    models' inputs and the table of a prediction need."""
    return {
        "name": dataset.name,
        "class_names": list(dataset.class_names),
        "metadata": dict(dataset.metadata),
        "features": {
            name: {"shape": list(values.shape[1:]), "dtype": str(values.dtype)}
            for name, values in dataset.examples.items()
        },
    }


def corpus_record(corpus: Any) -> dict[str, Any]:
    """dataset.json's content for a run on a `VideoCorpus` that trains no model (the
    spotting baseline): the build's name and metadata (frame rate, sampling, crop, grid,
    flow method), what its motion extraction on a new video needs."""
    return {"name": corpus.name, "class_names": [], "metadata": dict(corpus.metadata),
            "features": {}}


def read_build(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> TrainedBuild:
    """The build a LOSO workdir's models were trained on.

    Raises:
        UserError: no dataset.json (a workdir trained before it was written).
    """
    path = workdir / DATASET_JSON
    if not path.is_file():
        raise UserError(
            f"{workdir} holds no {DATASET_JSON} (what the models' build was), which "
            "training writes since prediction exists; write it with `python launch.py "
            f"--config CONFIG --workdir {workdir} --mode eval`, CONFIG being the config it "
            f"was trained with (its settings are in {CONFIG_JSON}), the data available."
        )
    record = read_json(path, "it records the build the models were trained on")
    # The builders with release variants name them by builder config or `release` field.
    data = config.data
    return TrainedBuild(
        name=record["name"],
        release=(data.get("overrides") or {}).get("release") or data.get("builder_config"),
        class_names=tuple(record["class_names"]),
        metadata=record["metadata"],
        features={
            name: (tuple(spec["shape"]), spec["dtype"]) for name, spec in record["features"].items()
        },
    )


# ---------------------------------------------------------------------------
# The trained ensemble.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Group:
    """The replicas of one configuration (the run's own, or a chosen grid point's)."""

    graphdef: nnx.GraphDef
    replicas: tuple[Replica, ...]


class Ensemble:
    """Every trained (fold, seed) replica of a finished LOSO workdir, restored as stacks
    of model states (no optimizer state) on the default device, and the function that
    predicts with all of them."""

    def __init__(self, workdir: str | pathlib.Path, task: str = "loso") -> None:
        """Restores the replicas of `workdir`, a finished run of `task` ("loso", or
        "spotting": the learned spotter's windows).

        Raises:
            UserError: not a LOSO workdir, no dataset.json, training not finished (no
                checkpoints, a checkpoint short of train.steps, no metrics.json), or a
                model reading inputs a new clip cannot give.
        """
        self.workdir = pathlib.Path(workdir)
        self.config = read_config(self.workdir, task)
        self.build = read_build(self.workdir, self.config)
        self.model_name = self.config.model.name
        if not (self.workdir / METRICS_JSON).is_file():
            raise UserError(
                f"{self.workdir} holds no finished training ({METRICS_JSON} is written when "
                f"a LOSO run ends); run {finish_command(self.workdir)} to finish it."
            )
        # One group of replicas per configuration: the run's own, or under nested
        # selection each outer grid point's (its models may differ, e.g. in dropout).
        self._groups: list[_Group] = []
        states = []
        for folder, config in self._configurations():
            group, state, abstract_model = self._restore(folder, config)
            self._groups.append(group)
            states.append(state)
        self.state = tuple(states)
        self.replicas = [r for group in self._groups for r in group.replicas]
        self._check_complete()
        self.inputs = self._input_specs(abstract_model.fields)
        self._annotations = [name for name in abstract_model.fields if name in ANNOTATION_FIELDS]
        self._jitted = jax.jit(self.function)

    def _configurations(self) -> list[tuple[str, ml_collections.ConfigDict]]:
        """(checkpoint folder, config) of every group of trained replicas."""
        points = grid_points(self.config)
        if not points:
            return [("", self.config)]
        root = self.workdir / CHECKPOINTS
        # Nested selection: the outer runs of the points some outer fold chose.
        chosen = [g for g in range(len(points)) if (root / outer_folder(g)).is_dir()]
        return [(outer_folder(g), apply_point(self.config, points[g])) for g in chosen] or [
            (outer_folder(0), self.config)
        ]

    def _restore(
        self, folder: str, config: ml_collections.ConfigDict
    ) -> tuple[_Group, dict[str, Any], models.MERModel]:
        """A stage's real replicas (padding rows dropped) and their stacked model states."""
        root = self.workdir / CHECKPOINTS / folder
        directories = chunk_directories(root)
        if not directories:
            raise UserError(
                f"{self.workdir} holds no finished training (no checkpoints in {root}); run "
                f"{finish_command(self.workdir)} to train it."
            )
        model_config = models.with_build_settings(config.model, self.build.metadata)
        num_classes = len(self.build.class_names)
        dtype = jnp.dtype(config.engine.compute_dtype)

        def model_state(key: jax.Array) -> dict[str, Any]:
            model = models.create_model(model_config, num_classes, rngs=nnx.Rngs(key), dtype=dtype)
            _, params, rest = nnx.split(model, nnx.Param, ...)
            return {"params": params, "rest": rest}

        abstract_model = nnx.eval_shape(
            lambda: models.create_model(
                model_config, num_classes, rngs=nnx.Rngs(jax.random.key(0)), dtype=dtype
            )
        )
        graphdef = nnx.split(abstract_model, nnx.Param, ...)[0]
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        replicas, states = [], []
        for index, directory in enumerate(directories):
            ckpt = checkpoint.Checkpointer(directory, async_save=False)
            try:
                chunk, step, _ = finished_chunk(ckpt, index, config.train.steps, self.workdir)
                shapes = jax.eval_shape(jax.vmap(model_state), replica_keys(chunk.rows))
                state = ckpt.restore_model(step, checkpoint.abstract_like(shapes, device))
            finally:
                ckpt.close()
            # Padding rows repeat the chunk's last replica.
            real = len(chunk.replicas)
            states.append(jax.tree.map(lambda x, real=real: x[:real], state))
            replicas.extend(chunk.replicas)
        stacked = jax.tree.map(lambda *parts: jnp.concatenate(parts), *states)
        return _Group(graphdef, tuple(replicas)), stacked, abstract_model

    def _input_specs(self, fields: Sequence[str]) -> dict[str, tuple[tuple[int, ...], str]]:
        """(per-sample shape, dtype) of every field the model reads from a clip's pixels."""
        pixel_fields = [name for name in fields if name not in ANNOTATION_FIELDS]
        unknown = [name for name in pixel_fields if name not in self.build.features]
        if unknown:
            raise UserError(
                f"model {self.config.model.name!r} reads {unknown}, which build "
                f"{self.build.name} does not hold; this workdir cannot predict."
            )
        return {name: self.build.features[name] for name in pixel_fields}

    def _check_complete(self) -> None:
        """The replicas restored must be the whole finished run: every fold, every seed."""
        root = self.workdir / CHECKPOINTS
        metrics = read_json(self.workdir / METRICS_JSON, "it holds the run's evaluation")
        num_folds = metrics["n_folds"]
        expected = {Replica(f, int(s)) for s in self.config.seeds for f in range(num_folds)}
        if set(self.replicas) != expected:
            raise UserError(
                f"the checkpoints in {root} hold {len(self.replicas)} (fold, seed) runs, not "
                f"the {len(expected)} of the finished run ({num_folds} folds x seeds "
                f"{tuple(self.config.seeds)}); train the workdir again."
            )

    def function(
        self, state: tuple[Any, ...], inputs: dict[str, jax.Array]
    ) -> dict[str, jax.Array]:
        """The ensemble's prediction from the stacked model states and a batch of inputs:
        "probabilities" (batch, classes) averaged over the replicas, "spread" their
        standard deviation, "replica_probabilities" (replicas, batch, classes).

        Pure and traceable: `predict` runs it jitted and the export serializes it.
        """
        batch = next(iter(inputs.values())).shape[0]
        data = dict(inputs)
        for name in self._annotations:
            shape, dtype = self.build.features[name]
            data[name] = jnp.zeros((batch, *shape), dtype)
        probabilities = jnp.concatenate(
            [
                jax.vmap(
                    lambda params, rest, key, graphdef=group.graphdef: replica_probabilities(
                        graphdef, params, rest, data, key
                    )
                )(group_state["params"], group_state["rest"], replica_keys(group.replicas))
                for group, group_state in zip(self._groups, state, strict=True)
            ]
        )
        return {
            "probabilities": probabilities.mean(axis=0),
            "spread": probabilities.std(axis=0),
            "replica_probabilities": probabilities,
        }

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`function` on a batch of preprocessed clips, as numpy arrays.

        Raises:
            UserError: inputs that do not match the build's (see `export.check_inputs`).
        """
        arrays = export.check_inputs(inputs, self.inputs, f"the models of {self.workdir}")
        outputs = self._jitted(self.state, arrays)
        return {name: np.asarray(value) for name, value in jax.device_get(outputs).items()}
