"""Use a trained LOSO workdir: predict on new clips, and export the portable predictor.

Every LOSO replica (one (fold, seed) run) was trained without one subject, so together
they form an ensemble that has never seen a new person. A new clip's prediction is the
replicas' class probabilities averaged, with their spread (standard deviation over the
replicas) saying how much they agree.

What `launch.py --workdir W --mode predict --input PATH` reads (`read_requests`):

- a folder of frames, numbered by the integer in their file names (the dataset readers'
  rule, `mer_jax.preprocess.list_frames`);
- a video (.mp4, .avi, .mov, .mkv) read with OpenCV; its frame numbers are the 0-based
  frame indices;
- a CSV of clips: header `path,onset,offset[,apex]`, one clip a row, paths relative to
  the CSV's folder, empty cells as omitted flags.

`--onset`/`--offset` omitted: the whole folder or video is the clip (with a warning). No
apex: the build's rule, the frame nearest the middle (`middle_frame`).

Preprocessing is the build's own code and settings: `mer_jax.preprocess.clip_features`
with the options the workdir's dataset.json records (crop and flow sizes, flow methods,
T stored frames): dlib finds the face on the onset frame and one alignment serves the
whole clip. A landmarks sidecar beside the clip, `<folder or video name without
extension>.landmarks.csv` (the sidecar format of `read_landmarks_sidecar`, rows by frame
number), replaces dlib on the frames it covers; a clip where dlib finds no face fails
naming that path. Models trained on a release's official face crops saw those crops
only resized, never aligned by us: they take frame folders of face crops (resized the
same way), and refuse a video.

Outputs: a table printed and written to `predictions_new.csv` in the workdir (or
`--output`): per clip its frames, the predicted class, and per class the mean
probability and its spread.

`export_workdir` (`--mode export`) writes the same ensemble function, serialized, with
its parameters, class names and preprocessing settings: see `mer_jax.export`.
"""

import csv
import dataclasses
import json
import logging
import pathlib
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mer_jax import export, models
from mer_jax.errors import UserError
from mer_jax.evaluate import report
from mer_jax.preprocess import (
    ClipFrames,
    ClipOptions,
    NoFaceError,
    clip_features,
    list_frames,
    middle_frame,
    sample_frames,
    sidecar_path,
)
from mer_jax.train import checkpoint, engine, optim, run, tuning

log = logging.getLogger(__name__)

PREDICTIONS_NEW_CSV = "predictions_new.csv"
EXPORT_DIR = "export"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
# Dataset fields that are annotations, not pixels: a new clip has none. DeRe-GRL reads
# the AU vector only as the target of its AU loss (its logits never see it), so zeros
# stand in for it.
ANNOTATION_FIELDS = ("action_units", "action_units_known")
# The builder config (or `release` override) of a release's official face crops.
CROPPED_RELEASE = "cropped"


# ---------------------------------------------------------------------------
# The workdir: its build and its trained replicas.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainedBuild:
    """What a LOSO workdir records of the data its models were trained on.

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

    @property
    def options(self) -> ClipOptions:
        """The build's preprocessing options."""
        fields = [field.name for field in dataclasses.fields(ClipOptions)]
        return ClipOptions(**{name: self.metadata[name] for name in fields})

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing settings a caller needs to make a model input."""
        return {**dataclasses.asdict(self.options), "face_cropped": self.face_cropped}


def read_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
    """The config of a LOSO workdir.

    Raises:
        UserError: no config.json (not a workdir), or a run of another task.
    """
    path = workdir / run.CONFIG_JSON
    if not path.is_file():
        raise UserError(
            f"{workdir} holds no {run.CONFIG_JSON}: give the --workdir of a finished LOSO "
            "training run (python launch.py --config CONFIG --workdir W)."
        )
    config = ml_collections.ConfigDict(json.loads(path.read_text()))
    if config.get("task", "loso") != "loso":
        raise UserError(
            f"{workdir} holds a {config.task!r} run; prediction needs the workdir of a LOSO "
            "run, whose trained classifiers it averages."
        )
    return config


def read_build(workdir: pathlib.Path, config: ml_collections.ConfigDict) -> TrainedBuild:
    """The build a LOSO workdir's models were trained on.

    Raises:
        UserError: no dataset.json (a workdir trained before it was written).
    """
    path = workdir / engine.DATASET_JSON
    if not path.is_file():
        raise UserError(
            f"{workdir} holds no {engine.DATASET_JSON} (what the models' build was), which "
            "training writes since prediction exists; write it with `python launch.py "
            f"--config CONFIG --workdir {workdir} --mode eval`, CONFIG being the config it "
            f"was trained with (its settings are in {run.CONFIG_JSON}), the data available."
        )
    record = json.loads(path.read_text())
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


def replica_keys(replicas: Sequence[engine.Replica]) -> jax.Array:
    """The replicas' keys, derived as the engine derives them (from seed and fold)."""
    return jnp.stack([engine.replica_key(r) for r in replicas])


class Ensemble:
    """Every trained (fold, seed) replica of a finished LOSO workdir, restored as one
    stack of model states on the default device, and the function that predicts with
    all of them."""

    def __init__(self, workdir: str | pathlib.Path) -> None:
        """Restores the replicas of `workdir`.

        Raises:
            UserError: not a LOSO workdir, no dataset.json, training not finished (no
                checkpoints, a checkpoint short of train.steps, no metrics.json), or a
                model reading inputs a new clip cannot give.
        """
        self.workdir = pathlib.Path(workdir)
        self.config = read_config(self.workdir)
        self.build = read_build(self.workdir, self.config)
        self.model_name = self.config.model.name
        # One group of replicas per configuration: the run's own, or under nested
        # selection each outer grid point's (its models may differ, e.g. in dropout).
        self._groups, states, self.replicas = [], [], []
        for folder, config in self._configurations():
            functions, abstract_model = self._functions(config)
            replicas, state = self._restore(
                self.workdir / run.CHECKPOINTS / folder, functions, config.train.steps
            )
            self._groups.append((functions.predict, replicas))
            states.append(state)
            self.replicas += replicas
        self.state = tuple(states)
        self._check_complete()
        self.inputs = self._input_specs(abstract_model.fields)
        self._annotations = [name for name in abstract_model.fields if name in ANNOTATION_FIELDS]
        self._jitted = jax.jit(self.function)

    def _configurations(self) -> list[tuple[str, ml_collections.ConfigDict]]:
        """(checkpoint folder, config) of every group of trained replicas."""
        points = tuning.grid_points(self.config)
        if not points:
            return [("", self.config)]
        root = self.workdir / run.CHECKPOINTS
        # Nested selection: the outer runs of the points some outer fold chose (an
        # unfinished run may have none yet; `_restore` then says so).
        chosen = [g for g in range(len(points)) if (root / f"outer_g{g:02d}").is_dir()]
        return [
            (f"outer_g{g:02d}", tuning.apply_point(self.config, points[g])) for g in chosen
        ] or [("outer_g00", self.config)]

    def _functions(self, config: ml_collections.ConfigDict) -> tuple[Any, Any]:
        model_config = models.with_build_settings(config.model, self.build.metadata)
        # The optimizer only shapes the training state; prediction restores none of it.
        return engine.build_functions(
            config,
            model_config,
            len(self.build.class_names),
            optim.make_optimizer(config.train),
            steps_per_call=1,
        )

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

    def _restore(
        self, root: pathlib.Path, functions: Any, steps: int
    ) -> tuple[list[engine.Replica], dict[str, Any]]:
        """The real replicas of every chunk in `root` (padding rows dropped) and their
        stacked model states."""
        metrics_path = self.workdir / report.METRICS_JSON
        directories = sorted(root.glob("chunk_*")) if root.is_dir() else []
        if not directories or not metrics_path.is_file():
            raise UserError(
                f"{self.workdir} holds no finished training (checkpoints/ and "
                f"{report.METRICS_JSON} are complete when a LOSO run ends); run "
                f"`python launch.py --config CONFIG --workdir {self.workdir}` to train it."
            )
        device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        replicas, states = [], []
        for directory in directories:
            ckpt = checkpoint.Checkpointer(directory, async_save=False)
            step = ckpt.latest_step()
            meta = ckpt.restore_meta(step) if step is not None else None
            if meta is None or step != steps:
                ckpt.close()
                raise UserError(
                    f"{directory} holds no finished training (step {step} of {steps}); run "
                    f"`python launch.py --config CONFIG --workdir {self.workdir}` to finish it."
                )
            chunk = engine.Chunk(
                0, tuple(engine.Replica(*r) for r in meta["replicas"]), meta["padded_size"]
            )
            shapes = jax.eval_shape(functions.init, replica_keys(chunk.rows))
            target = checkpoint.abstract_like(
                {"params": shapes["params"], "rest": shapes["rest"]}, device
            )
            state = ckpt.restore_model(step, target)
            ckpt.close()
            # Padding rows repeat the chunk's last replica.
            real = len(chunk.replicas)
            states.append(jax.tree.map(lambda x, real=real: x[:real], state))
            replicas.extend(chunk.replicas)
        stacked = jax.tree.map(lambda *parts: jnp.concatenate(parts), *states)
        return replicas, stacked

    def _check_complete(self) -> None:
        """The replicas restored must be the whole finished run: every fold, every seed."""
        root = self.workdir / run.CHECKPOINTS
        num_folds = json.loads((self.workdir / report.METRICS_JSON).read_text())["n_folds"]
        expected = {engine.Replica(f, int(s)) for s in self.config.seeds for f in range(num_folds)}
        if set(self.replicas) != expected:
            raise UserError(
                f"the checkpoints in {root} hold {len(self.replicas)} (fold, seed) runs, not "
                f"the {len(expected)} of the finished run ({num_folds} folds x seeds "
                f"{tuple(self.config.seeds)}); train the workdir again."
            )

    def function(self, state: dict[str, Any], inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
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
                predict(
                    group_state,
                    data,
                    jnp.broadcast_to(jnp.arange(batch), (len(replicas), batch)),
                    replica_keys(replicas),
                )
                for (predict, replicas), group_state in zip(self._groups, state, strict=True)
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


# ---------------------------------------------------------------------------
# Clips: what to predict on, and their preprocessing.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClipRequest:
    """One clip to predict on.

    Attributes:
        path: a frame folder or a video file.
        onset, offset, apex: frame numbers, None where not given.
        where: where the request comes from, for messages ("--input", "clips.csv row 3").
    """

    path: pathlib.Path
    onset: int | None = None
    offset: int | None = None
    apex: int | None = None
    where: str = "--input"


def read_requests(
    input_path: str | pathlib.Path,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
) -> list[ClipRequest]:
    """The clips an --input names: itself (a folder or video), or the rows of a CSV.

    Raises:
        UserError: no such path, a CSV given with onset/offset/apex flags, a CSV without
            a path column or with a cell that is not a frame number (file and row named).
    """
    path = pathlib.Path(input_path).expanduser()
    if not path.exists():
        raise UserError(f"--input {path} does not exist")
    if path.suffix.lower() != ".csv":
        return [ClipRequest(path, onset, offset, apex)]
    if (onset, offset, apex) != (None, None, None):
        raise UserError(
            f"--input {path} is a CSV of clips: give each clip's frames in its onset, offset "
            "and apex columns, not as --onset/--offset/--apex"
        )
    requests = []
    with path.open(newline="") as handle:
        rows = csv.DictReader(handle)
        columns = [name.strip() for name in rows.fieldnames or []]
        if "path" not in columns:
            raise UserError(
                f"{path} has no 'path' column; expected a header path,onset,offset[,apex]"
            )
        for row_number, row in enumerate(rows, start=2):
            cells = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            if not cells.get("path"):
                continue
            where = f"{path.name} row {row_number}"
            frames = {
                name: _frame_cell(cells.get(name, ""), name, where)
                for name in ("onset", "offset", "apex")
            }
            requests.append(ClipRequest(path.parent / cells["path"], **frames, where=where))
    if not requests:
        raise UserError(f"{path} lists no clip; expected a header path,onset,offset[,apex]")
    return requests


def _frame_cell(text: str, column: str, where: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{where}: {column} {text!r} is not a frame number") from None


@dataclasses.dataclass(frozen=True)
class ClipSpan:
    """A request's frames resolved against what is on disk: onset, apex, offset."""

    onset: int
    apex: int
    offset: int


def resolve_span(request: ClipRequest, present: Sequence[int], source: str) -> ClipSpan:
    """The request's onset, apex and offset among the `present` frame numbers (sorted).

    Without onset and offset the clip is every present frame (warned about); without an
    apex, the frame nearest the middle (the build's rule).

    Raises:
        UserError: only one of onset/offset, a frame not present, onset after offset, or
            an apex outside onset..offset.
    """
    where = f"{request.where} ({request.path})"
    if (request.onset is None) != (request.offset is None):
        raise UserError(f"{where}: give both onset and offset, or neither (the whole clip)")
    first, last = present[0], present[-1]
    if request.onset is None:
        log.warning(
            "%s: no onset/offset given, so the whole %s (frames %d..%d) is taken as the clip",
            where,
            source,
            first,
            last,
        )
        onset, offset = first, last
    else:
        onset, offset = request.onset, request.offset
    named = {"onset": onset, "offset": offset}
    if request.apex is not None:
        named["apex"] = request.apex
    present_set = set(present)
    for name, number in named.items():
        if number not in present_set:
            raise UserError(
                f"{where}: {name} {number} is out of range: the {source} has frames "
                f"{first}..{last}"
                + ("" if last - first + 1 == len(present) else f" ({len(present)} present)")
            )
    if offset < onset:
        raise UserError(f"{where}: onset {onset} is after offset {offset}")
    if request.apex is not None and not onset <= request.apex <= offset:
        raise UserError(f"{where}: apex {request.apex} is outside onset..offset {onset}..{offset}")
    inside = [number for number in present if onset <= number <= offset]
    apex = request.apex if request.apex is not None else middle_frame(inside, onset, offset)
    return ClipSpan(onset, apex, offset)


def video_frames(
    path: pathlib.Path, keep: set[int], *, until: int | None = None
) -> tuple[dict[int, np.ndarray], int]:
    """The BGR frames of a video whose 0-based index is in `keep`, and how many frames
    were decoded: up to frame `until` (None: to the end, i.e. the frame count).

    Raises:
        UserError: OpenCV cannot open the file or decode its first frame.
    """
    capture = cv2.VideoCapture(str(path))
    frames, index = {}, 0
    try:
        while capture.isOpened() and (until is None or index <= until) and capture.grab():
            if index in keep:
                frames[index] = capture.retrieve()[1]
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise UserError(
            f"OpenCV cannot read video {path} (not a video, damaged, or a codec its FFmpeg "
            "lacks); convert it, e.g. `ffmpeg -i IN -c:v libx264 OUT.mp4`, or extract its "
            "frames into a folder"
        )
    return frames, index


def clip_frames(request: ClipRequest, build: TrainedBuild, scratch: pathlib.Path) -> ClipFrames:
    """The clip of a request as `clip_features` reads it (a video's frames decoded into
    `scratch`).

    Raises:
        UserError: not a folder or video, no frame image in a folder, an unreadable
            video, a video for a face-cropped build, or a span out of range.
    """
    path = request.path
    sidecar = sidecar_path(path)
    landmarks = sidecar if sidecar.is_file() else None
    name = str(path)
    if path.is_dir():
        frames = list_frames(path)
        if not frames:
            raise UserError(
                f"{request.where}: folder {path} holds no frame image (.jpg, .png, .bmp)"
            )
        span = resolve_span(request, sorted(frames), "folder")
        if build.face_cropped:
            log.warning(
                "%s: the models were trained on the official face crops of %s, so the frames "
                "of %s are taken as face crops and only resized, as those were",
                request.where,
                build.name,
                path,
            )
        numbers = [n for n in sorted(frames) if span.onset <= n <= span.offset]
        paths = [frames[n] for n in numbers]
    elif path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
        if build.face_cropped:
            raise UserError(
                f"{request.where}: {path} is a video, but these models were trained on the "
                f"official face crops of {build.name} (release {build.release!r}), which "
                "were only resized, never aligned by us, so a video cannot be cropped "
                "like them. Give a folder of face-cropped frames, or use a workdir trained on "
                "the raw release."
            )
        # Frames are counted up to the last frame requested only: a long recording is not
        # decoded to its end to check a clip at its start (one past its end is the count).
        until = None  # the whole video is the clip
        if request.offset is not None:
            until = max(n for n in (request.onset, request.offset, request.apex) if n is not None)
        _, count = video_frames(path, set(), until=until)
        span = resolve_span(request, range(count), "video")
        inside = range(span.onset, span.offset + 1)
        # Only the frames clip_features reads are decoded: onset, apex, offset and the T
        # stored ones. Each stored frame is the present frame nearest its time point, and
        # that frame is among these, so sampling them picks the same frames as sampling all.
        wanted = {span.onset, span.apex, span.offset}
        if build.options.num_frames:
            wanted |= {int(n) for n in sample_frames(inside, build.options.num_frames)}
        decoded, _ = video_frames(path, wanted, until=max(wanted))
        numbers = sorted(wanted)
        paths = []
        for number in numbers:
            # BMP: lossless, so the decoded pixels reach clip_features unchanged.
            frame_path = scratch / f"frame_{number}.bmp"
            cv2.imwrite(str(frame_path), decoded[number])
            paths.append(frame_path)
        name = f"{path} frames {span.onset}..{span.offset}"
    else:
        raise UserError(
            f"{request.where}: {path} is neither a frame folder, a video "
            f"({', '.join(VIDEO_EXTENSIONS)}) nor a CSV of clips"
        )
    return ClipFrames(
        name=name,
        frame_numbers=tuple(numbers),
        frame_paths=tuple(paths),
        onset=span.onset,
        apex=span.apex,
        offset=span.offset,
        face_cropped=build.face_cropped,
        landmarks_path=landmarks,
    )


def preprocess(request: ClipRequest, build: TrainedBuild) -> tuple[ClipFrames, dict[str, Any]]:
    """A requested clip and its features, computed exactly as the build computed its
    clips' (`clip_features` with the build's options).

    Raises:
        UserError: as `clip_frames`, or the clip cannot be processed; when no face is
            found, the message names the sidecar path that would fix it.
    """
    with tempfile.TemporaryDirectory(prefix="mer_jax_clip_") as scratch:
        clip = clip_frames(request, build, pathlib.Path(scratch))
        try:
            features = clip_features(clip, build.options)
        except UserError as error:
            message = str(error)
            # A video's frames were decoded into the scratch folder: name them as frames
            # of the video, which is what the user gave.
            for number, path in zip(clip.frame_numbers, clip.frame_paths, strict=True):
                if path.parent == pathlib.Path(scratch):
                    message = message.replace(str(path), f"{request.path} frame {number}")
            if isinstance(error.__cause__, NoFaceError):
                message += (
                    f" The sidecar of this clip would be read from {sidecar_path(request.path)}"
                    " (header frame,x_0..x_67,y_0..y_67, one row per frame number)."
                )
            raise UserError(f"{request.where}: {message}") from None
    return clip, features


# ---------------------------------------------------------------------------
# The predict and export commands.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Predictions:
    """The ensemble's predictions on some clips, and where the time went.

    Attributes:
        clips: the clips, in input order.
        class_names: the classes.
        probabilities, spread: (clips, classes) mean over replicas and its std.
        num_replicas: replicas averaged.
        preprocess_s: seconds of preprocessing, per clip.
        inference_s: seconds of the ensemble on the whole batch (the first call
            includes compiling it).
    """

    clips: tuple[ClipFrames, ...]
    class_names: tuple[str, ...]
    probabilities: np.ndarray
    spread: np.ndarray
    num_replicas: int
    preprocess_s: tuple[float, ...]
    inference_s: float

    def rows(self) -> list[dict[str, Any]]:
        """One dict a clip: the columns of predictions_new.csv."""
        rows = []
        for index, clip in enumerate(self.clips):
            pred = int(self.probabilities[index].argmax())
            row: dict[str, Any] = {
                "clip": clip.name,
                "onset": clip.onset,
                "apex": clip.apex,
                "offset": clip.offset,
                "pred": pred,
                "pred_class": self.class_names[pred],
            }
            for c, name in enumerate(self.class_names):
                row[f"p_{name}"] = f"{self.probabilities[index, c]:.6f}"
            for c, name in enumerate(self.class_names):
                row[f"spread_{name}"] = f"{self.spread[index, c]:.6f}"
            rows.append(row)
        return rows

    def write_csv(self, path: pathlib.Path) -> None:
        """Writes the rows to `path` (predictions_new.csv)."""
        rows = self.rows()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    def table(self) -> str:
        """The predictions as a text table: per clip its frames, the predicted class and
        per class the mean probability +- its spread over the replicas."""
        width = max(14, *(len(name) for name in self.class_names))
        header = f"{'clip (onset-apex-offset)':<44} {'predicted':<{width}}" + "".join(
            f" {name:>{width}}" for name in self.class_names
        )
        lines = [header]
        for row, clip in zip(self.rows(), self.clips, strict=True):
            label = f"{_shorten(clip.name, 30)} ({clip.onset}-{clip.apex}-{clip.offset})"
            cells = "".join(
                f" {float(row[f'p_{n}']):.3f} +- {float(row[f'spread_{n}']):.3f}".rjust(width + 1)
                for n in self.class_names
            )
            lines.append(f"{label:<44} {row['pred_class']:<{width}}{cells}")
        lines.append(
            f"{self.num_replicas} (fold, seed) replicas averaged (+- their std); preprocessing "
            f"{np.mean(self.preprocess_s):.2f} s per clip, inference {self.inference_s:.2f} s "
            f"for {len(self.clips)} clip(s) (including compilation)"
        )
        return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3) :]


def predict_clips(ensemble: Ensemble, requests: Sequence[ClipRequest]) -> Predictions:
    """Preprocesses every requested clip as the build did, then predicts them in one batch.

    Raises:
        UserError: a clip that cannot be read or preprocessed (see `preprocess`).
    """
    clips, features, seconds = [], [], []
    for request in requests:
        tic = time.perf_counter()
        clip, clip_arrays = preprocess(request, ensemble.build)
        seconds.append(time.perf_counter() - tic)
        clips.append(clip)
        features.append(clip_arrays)
    absent = sorted(set(ensemble.inputs) - set(features[0]))
    if absent:
        raise UserError(
            f"model {ensemble.model_name!r} of {ensemble.workdir} reads {absent}, which only "
            "a built dataset holds: a new clip's preprocessing does not compute them"
        )
    inputs = {name: np.stack([f[name] for f in features]) for name in ensemble.inputs}
    tic = time.perf_counter()
    outputs = ensemble.predict(inputs)
    inference_s = time.perf_counter() - tic
    return Predictions(
        clips=tuple(clips),
        class_names=ensemble.build.class_names,
        probabilities=outputs["probabilities"],
        spread=outputs["spread"],
        num_replicas=len(ensemble.replicas),
        preprocess_s=tuple(seconds),
        inference_s=inference_s,
    )


def predict_workdir(
    workdir: str | pathlib.Path,
    input_path: str | pathlib.Path,
    *,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
    output: str | pathlib.Path | None = None,
) -> tuple[Predictions, pathlib.Path]:
    """`--mode predict`: the workdir's ensemble on the clips of `input_path`, written to
    `output` (default: the workdir's predictions_new.csv).

    Returns:
        the predictions and the CSV written.

    Raises:
        UserError: see `Ensemble`, `read_requests` and `preprocess`.
    """
    ensemble = Ensemble(workdir)
    predictions = predict_clips(ensemble, read_requests(input_path, onset, offset, apex))
    path = pathlib.Path(output) if output else ensemble.workdir / PREDICTIONS_NEW_CSV
    predictions.write_csv(path)
    return predictions, path


def export_workdir(
    workdir: str | pathlib.Path, output: str | pathlib.Path | None = None
) -> pathlib.Path:
    """`--mode export`: writes the workdir's ensemble as a portable predictor into
    `output` (default: the workdir's export/); see `mer_jax.export`.

    Raises:
        UserError: see `Ensemble`.
    """
    ensemble = Ensemble(workdir)
    leaves, treedef = jax.tree.flatten(ensemble.state)
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree.leaves_with_path(ensemble.state)]

    def function(parameters: list[jax.Array], inputs: dict[str, jax.Array]) -> dict[str, Any]:
        return ensemble.function(jax.tree.unflatten(treedef, parameters), inputs)

    build = ensemble.build
    info = {
        "class_names": list(build.class_names),
        "preprocessing": build.preprocessing,
        "dataset": {"name": build.name, "release": build.release},
        "model": ensemble.model_name,
        "replicas": [[r.fold, r.seed] for r in ensemble.replicas],
    }
    directory = pathlib.Path(output) if output else ensemble.workdir / EXPORT_DIR
    return export.save(
        directory,
        function,
        [np.asarray(leaf) for leaf in jax.device_get(leaves)],
        paths,
        ensemble.inputs,
        info,
    )


def use_workdir(
    mode: str,
    workdir: str | None,
    *,
    input_path: str | None = None,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
    output: str | None = None,
) -> str:
    """`launch.py --mode predict | export`: runs the mode on a trained workdir and returns
    what to print (the table and the CSV written, or the export folder), with the time.

    Raises:
        UserError: no --workdir, predict without --input, or what `predict_workdir` /
            `export_workdir` raise.
    """
    if not workdir:
        raise UserError(f"--mode {mode} needs the --workdir of a finished LOSO training run")
    tic = time.perf_counter()
    if mode == "export":
        lines = [f"exported the predictor to {export_workdir(workdir, output)}"]
    else:
        if not input_path:
            raise UserError(
                "--mode predict needs --input: a frame folder, a video or a CSV of clips"
            )
        predictions, path = predict_workdir(
            workdir, input_path, onset=onset, offset=offset, apex=apex, output=output
        )
        lines = [predictions.table(), f"predictions written to {path}"]
    lines.append(f"{mode} finished in {time.perf_counter() - tic:.0f} s")
    return "\n".join(lines)
