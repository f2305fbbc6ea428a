"""Leak-free evaluation outputs: pooled out-of-fold predictions to metrics.json and plots.

The engine collects, for every seed, one prediction per sample, made by the LOSO
fold that held that sample's subject out, into a `Predictions` table keyed by
sample_id. Everything reported is computed from that table:

- per seed, UF1 / UAR / accuracy computed once on the predictions of all folds
  pooled (never averaged over folds: a LOSO fold holds one subject, often with one
  or two classes and a handful of samples, so per-fold F1 is mostly noise and its
  average is not the MEGC metric);
- the same on each source-dataset subset of the pooled predictions (MEGC style),
  so a composite reports casme2 / samm / smic separately;
- mean and population std (ddof=0) of those numbers over seeds, plus the
  per-seed values.

`write_all` writes metrics.json, predictions.csv, confusion_matrix.png and
curves.png into a work directory.
"""

import contextlib
import csv
import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from mer_jax.evaluate import bootstrap, figures
from mer_jax.evaluate.metrics import classification_metrics
from mer_jax.workdir import METRICS_JSON, PREDICTIONS_CSV

CONFUSION_MATRIX_PNG = "confusion_matrix.png"
CURVES_PNG = "curves.png"

POLICY = (
    "Metrics are computed once per seed on the out-of-fold predictions of all LOSO folds "
    "pooled (every sample predicted exactly once, by the fold that held its subject out); "
    "they are never averaged over folds, and per_fold is a diagnostic only. UF1 = mean over "
    "classes of 2TP/(2TP+FP+FN), UAR = mean over classes of TP/N_c, confusion_matrix rows = "
    "true label, columns = prediction, summed over seeds. per_dataset applies the same to "
    "each source-dataset subset of the pooled predictions. A class with no true sample in "
    "the scored set (N_c = 0) is excluded from the UF1 and UAR means and listed in "
    "absent_classes; predicting it is still an error: those predictions are false negatives "
    "of the samples' true classes and lower accuracy, but as false positives they count "
    "only towards the absent class's own F1, which is dropped. Reported values are the mean "
    "over seeds, *_std the population std over seeds (ddof=0), per_seed the values of each "
    "seed."
)

_HEADLINE = ("uf1", "uar", "accuracy")
_ID_COLUMNS = ("sample_id", "dataset", "subject", "fold", "seed", "label", "pred")
_TEXT_FIELDS = ("sample_id", "dataset", "subject")
_INT_FIELDS = ("fold", "seed", "label", "pred")


@dataclasses.dataclass(frozen=True, eq=False)
class Predictions:
    """Out-of-fold predictions: aligned arrays, one row per (seed, test sample).

    Construction checks the table describes a leak-free evaluation: every sample_id
    appears exactly once per seed (a duplicate means a fold was evaluated twice, a
    sample missing for one seed means a fold was skipped), a sample has the same
    dataset, subject, fold and label for every seed, and all samples of a subject
    sit in one test fold (otherwise that subject was also in some fold's training
    set).

    Attributes:
        sample_id: (n,) str, unique across datasets.
        dataset: (n,) str, the source dataset (e.g. "casme2").
        subject: (n,) str, the subject id within its dataset.
        fold: (n,) int, the LOSO fold that tested the sample.
        seed: (n,) int, the training seed.
        label: (n,) int, true class index.
        pred: (n,) int, predicted class index.
        probs: (n, C) float64, predicted class probabilities.
    """

    sample_id: np.ndarray
    dataset: np.ndarray
    subject: np.ndarray
    fold: np.ndarray
    seed: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    probs: np.ndarray

    def __post_init__(self) -> None:
        # Frozen, so the validated arrays cannot be swapped afterwards; the
        # normalised copies are set once here.
        for name in _TEXT_FIELDS:
            object.__setattr__(self, name, np.asarray(getattr(self, name)).astype(np.str_))
        for name in _INT_FIELDS:
            values = np.asarray(getattr(self, name))
            if values.size and values.dtype.kind not in "iu":
                raise TypeError(f"Predictions.{name} must hold integers, got dtype {values.dtype}")
            object.__setattr__(self, name, values.astype(np.int64))
        object.__setattr__(self, "probs", np.asarray(self.probs, dtype=np.float64))
        self._check_shapes()
        self._check_classes()
        self._check_leak_free()

    def _check_shapes(self) -> None:
        n = len(self.sample_id)
        if n == 0:
            raise ValueError("Predictions has no rows")
        for name in (*_TEXT_FIELDS, *_INT_FIELDS):
            values = getattr(self, name)
            if values.shape != (n,):
                raise ValueError(
                    f"Predictions.{name} has shape {values.shape}; every column must have "
                    f"shape ({n},) like sample_id"
                )
        if self.probs.ndim != 2 or self.probs.shape[0] != n or self.probs.shape[1] < 1:
            raise ValueError(
                f"Predictions.probs has shape {self.probs.shape}; expected ({n}, num_classes)"
            )

    def _check_classes(self) -> None:
        for name in ("label", "pred"):
            values = getattr(self, name)
            outside = (values < 0) | (values >= self.num_classes)
            if outside.any():
                row = int(np.flatnonzero(outside)[0])
                raise ValueError(
                    f"Predictions.{name} = {values[row]} for sample {str(self.sample_id[row])!r} "
                    f"(seed {self.seed[row]}) is not a class index in [0, {self.num_classes}); "
                    f"probs has {self.num_classes} columns"
                )

    def _check_leak_free(self) -> None:
        samples_of_seed: dict[int, set[str]] = {}
        identity: dict[str, tuple[str, str, int, int]] = {}
        rows = zip(
            self.sample_id.tolist(),
            self.seed.tolist(),
            self.dataset.tolist(),
            self.subject.tolist(),
            self.fold.tolist(),
            self.label.tolist(),
            strict=True,
        )
        for sample_id, seed, *sample in rows:
            seen = samples_of_seed.setdefault(seed, set())
            if sample_id in seen:
                raise ValueError(
                    f"sample {sample_id!r} appears more than once for seed {seed}: a fold was "
                    f"evaluated twice, or two datasets share a sample_id"
                )
            seen.add(sample_id)
            first = identity.setdefault(sample_id, tuple(sample))
            if first != tuple(sample):
                raise ValueError(
                    f"sample {sample_id!r} has (dataset, subject, fold, label) = {first} for "
                    f"one seed and {tuple(sample)} for seed {seed}: every seed must test the "
                    f"same samples in the same LOSO folds"
                )
        for seed, seen in sorted(samples_of_seed.items()):
            missing = identity.keys() - seen
            if missing:
                raise ValueError(
                    f"seed {seed} has no prediction for {len(missing)} sample(s) that other "
                    f"seeds predicted (e.g. {sorted(missing)[:3]}): a fold was skipped"
                )
        folds_of_subject: dict[tuple[str, str], set[int]] = {}
        for dataset, subject, fold, _ in identity.values():
            folds_of_subject.setdefault((dataset, subject), set()).add(fold)
        for (dataset, subject), folds in sorted(folds_of_subject.items()):
            if len(folds) > 1:
                raise ValueError(
                    f"subject {subject!r} of {dataset!r} is tested in folds {sorted(folds)}: "
                    f"all of a subject's samples must be in one test fold, else the subject "
                    f"was also in another fold's training set"
                )

    @property
    def num_classes(self) -> int:
        """C, the number of probability columns."""
        return int(self.probs.shape[1])

    def __len__(self) -> int:
        return len(self.sample_id)

    @classmethod
    def concatenate(cls, parts: Sequence[Self]) -> Self:
        """Joins the predictions of several folds or seeds into one validated table."""
        if not parts:
            raise ValueError("nothing to concatenate: got no Predictions")
        widths = sorted({part.num_classes for part in parts})
        if len(widths) > 1:
            raise ValueError(f"cannot concatenate Predictions with {widths} probability columns")
        return cls(
            **{
                field.name: np.concatenate([getattr(part, field.name) for part in parts])
                for field in dataclasses.fields(cls)
            }
        )


def _over_seeds(
    labels: np.ndarray,
    preds: np.ndarray,
    seeds: np.ndarray,
    sample_ids: np.ndarray,
    class_names: list[str],
    subjects: np.ndarray,
) -> dict[str, Any]:
    """Pooled metrics of one set of samples, per seed, then mean and std over seeds, with
    the 95% subject-bootstrap interval of UF1 and UAR."""
    num_classes = len(class_names)
    per_seed = {}
    for seed in sorted(set(seeds.tolist())):
        of_seed = seeds == seed
        scores = classification_metrics(labels[of_seed], preds[of_seed], num_classes)
        per_seed[str(seed)] = {key: scores[key] for key in _HEADLINE}
    # Every seed tests the same samples (checked by Predictions), so scoring all rows
    # at once gives the per-seed confusion matrices summed, and the absent classes,
    # which are the same for every seed.
    all_seeds = classification_metrics(labels, preds, num_classes)
    summary: dict[str, Any] = {}
    for key in _HEADLINE:
        values = np.array([scores[key] for scores in per_seed.values()])
        summary[key] = float(values.mean())
        summary[f"{key}_std"] = float(values.std(ddof=0))
    for key, bounds in bootstrap.interval(subjects, seeds, labels, preds, num_classes).items():
        summary[f"{key}_ci"] = bounds
    summary["per_seed"] = per_seed
    summary["n_samples"] = len(set(sample_ids.tolist()))
    summary["n_subjects"] = len(set(subjects.tolist()))
    summary["confusion_matrix"] = all_seeds["confusion_matrix"]
    summary["absent_classes"] = [class_names[c] for c in all_seeds["absent_classes"]]
    return summary


def _per_fold_diagnostics(predictions: Predictions) -> dict[str, Any]:
    """Accuracy of each LOSO fold, for spotting a broken fold; not a result."""
    folds = {}
    for fold in sorted(set(predictions.fold.tolist())):
        in_fold = predictions.fold == fold
        subjects = zip(
            predictions.dataset[in_fold].tolist(),
            predictions.subject[in_fold].tolist(),
            strict=True,
        )
        folds[str(fold)] = {
            # Each seed tests the same samples, so this equals the mean over seeds.
            "accuracy": float(np.mean(predictions.label[in_fold] == predictions.pred[in_fold])),
            "n_samples": len(set(predictions.sample_id[in_fold].tolist())),
            "subjects": sorted({f"{dataset}/{subject}" for dataset, subject in subjects}),
        }
    return {
        "diagnostic_only": True,
        "note": "Per-fold accuracy, mean over seeds, for spotting a broken fold. Not a result: "
        "the reported metrics are computed on all folds pooled.",
        "folds": folds,
    }


def summarize(predictions: Predictions, class_names: Sequence[str]) -> dict[str, Any]:
    """The content of metrics.json: pooled metrics, mean and std over seeds, per dataset.

    Args:
        predictions: the out-of-fold predictions of every seed.
        class_names: the C class names, in class-index order.

    Returns:
        A dict of JSON types only: "uf1", "uar", "accuracy" (means over seeds) with
        "*_std" (population std over seeds), "per_seed" ({str(seed): {uf1, uar,
        accuracy}}), "seeds", "n_samples" (distinct samples), "n_folds",
        "class_names", "confusion_matrix" (summed over seeds), "absent_classes"
        (class names with no true sample), "per_dataset" ({dataset: the same keys
        for that dataset's samples}), "per_fold" (diagnostic only) and "policy".
    """
    class_names = [str(name) for name in class_names]
    if predictions.num_classes != len(class_names):
        raise ValueError(
            f"predictions have {predictions.num_classes} probability columns but "
            f"{len(class_names)} class names were given: {class_names}"
        )
    subjects = np.char.add(np.char.add(predictions.dataset, "/"), predictions.subject)
    overall = _over_seeds(
        predictions.label,
        predictions.pred,
        predictions.seed,
        predictions.sample_id,
        class_names,
        subjects,
    )
    per_dataset = {}
    for dataset in sorted(set(predictions.dataset.tolist())):
        of_dataset = predictions.dataset == dataset
        per_dataset[dataset] = _over_seeds(
            predictions.label[of_dataset],
            predictions.pred[of_dataset],
            predictions.seed[of_dataset],
            predictions.sample_id[of_dataset],
            class_names,
            subjects[of_dataset],
        )
    return {
        **overall,
        "seeds": sorted(set(predictions.seed.tolist())),
        "n_folds": len(set(predictions.fold.tolist())),
        "class_names": class_names,
        "per_dataset": per_dataset,
        "per_fold": _per_fold_diagnostics(predictions),
        "policy": POLICY,
        "ci": bootstrap.METHOD,
    }


def _headline(metrics: Mapping[str, Any]) -> str:
    parts = []
    for name, key in (("UF1", "uf1"), ("UAR", "uar"), ("accuracy", "accuracy")):
        part = f"{name} {metrics[key]:.3f} +- {metrics[f'{key}_std']:.3f}"
        if f"{key}_ci" in metrics:
            low, high = metrics[f"{key}_ci"]
            part += f" [{low:.3f}, {high:.3f}]"
        parts.append(part)
    return "  ".join(parts)


def format_summary(metrics: Mapping[str, Any]) -> str:
    """A few human-readable lines summarising a `summarize` result, for the launcher."""
    lines = [
        f"{_headline(metrics)}  ({metrics['n_samples']} samples, {metrics['n_folds']} folds, "
        f"{len(metrics['seeds'])} seeds; +- std over seeds, [95% subject-bootstrap interval])"
    ]
    if metrics.get("selection") == "nested":
        tuning = metrics["tuning"]
        source = (
            f"the choices of {tuning['choices_from']}"
            if "choices_from" in tuning
            else "tuning.csv has every inner score"
        )
        lines.append(
            f"  hyper-parameters selected by nested LOSO ({len(tuning['chosen'])} outer "
            f"folds; {source})"
        )
    if metrics["absent_classes"]:
        lines.append(f"  absent classes (not in UF1/UAR): {', '.join(metrics['absent_classes'])}")
    if len(metrics["per_dataset"]) > 1:
        for dataset, scores in metrics["per_dataset"].items():
            line = f"  {dataset}: {_headline(scores)}  ({scores['n_samples']} samples)"
            if scores["absent_classes"]:
                line += f"  absent: {', '.join(scores['absent_classes'])}"
            lines.append(line)
    return "\n".join(lines)


@contextlib.contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path to write; on success moves it onto `path` in one step.

    A crash mid-write leaves the previous file (or none), never a truncated one.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        # Flush the data to disk before the rename, so a power cut cannot leave the
        # new name pointing at unwritten blocks.
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_predictions_csv(
    path: str | os.PathLike[str], predictions: Predictions, num_classes: int
) -> None:
    """Writes predictions.csv: sample_id,dataset,subject,fold,seed,label,pred,p_0..p_{C-1}.

    Rows are sorted by (seed, sample_id), so the file does not depend on fold order.
    """
    if predictions.num_classes != num_classes:
        raise ValueError(
            f"predictions have {predictions.num_classes} probability columns, "
            f"not num_classes = {num_classes}"
        )
    order = np.lexsort((predictions.sample_id, predictions.seed))
    columns = [getattr(predictions, name)[order].tolist() for name in _ID_COLUMNS]
    with _atomic_path(Path(path)) as temporary, open(temporary, "w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow([*_ID_COLUMNS, *(f"p_{c}" for c in range(num_classes))])
        # Python floats are written in their shortest exact form, so probabilities
        # survive the round trip bit for bit.
        for *ids, probs in zip(*columns, predictions.probs[order].tolist(), strict=True):
            writer.writerow([*ids, *probs])


def _parse_column(path: Path, name: str, values: tuple[str, ...], dtype: type) -> np.ndarray:
    try:
        return np.array(values, dtype=dtype)
    except ValueError as error:
        raise ValueError(
            f"{path}: column {name!r} holds a value that is not {dtype.__name__}"
        ) from error


def read_predictions_csv(path: str | os.PathLike[str]) -> Predictions:
    """Reads a file written by `write_predictions_csv` back into (validated) Predictions."""
    path = Path(path)
    with open(path, newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        rows = list(reader)
    if header is None:
        raise ValueError(f"{path} is empty: expected a predictions.csv header")
    num_classes = len(header) - len(_ID_COLUMNS)
    expected = [*_ID_COLUMNS, *(f"p_{c}" for c in range(num_classes))]
    if num_classes < 1 or header != expected:
        raise ValueError(
            f"{path} has header {header}; expected {','.join(_ID_COLUMNS)},p_0..p_(C-1)"
        )
    if not rows:
        raise ValueError(f"{path} has a header but no predictions")
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}:{line} has {len(row)} fields; the header has {len(header)}")
    columns = list(zip(*rows, strict=True))
    fields: dict[str, np.ndarray] = {}
    for index, name in enumerate(_ID_COLUMNS):
        dtype = str if name in _TEXT_FIELDS else int
        fields[name] = _parse_column(path, name, columns[index], dtype)
    probs = [
        _parse_column(path, f"p_{c}", columns[len(_ID_COLUMNS) + c], float)
        for c in range(num_classes)
    ]
    return Predictions(**fields, probs=np.stack(probs, axis=1))


def _json_safe(value: object, where: str) -> object:
    """`value` with numpy types turned into JSON types; `where` names it in errors."""
    if isinstance(value, Mapping):
        safe = {}
        for key, item in value.items():
            if isinstance(key, np.generic):
                key = key.item()
            if not isinstance(key, str | int) or isinstance(key, bool):
                raise TypeError(f"{where} has key {key!r}; JSON keys must be str or int")
            safe[str(key)] = _json_safe(item, f"{where}.{key}")
        return safe
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [_json_safe(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: a metric that is not finite means a broken run")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{where} has type {type(value).__name__}, which has no JSON form")


def write_metrics_json(path: str | os.PathLike[str], metrics: Mapping[str, Any]) -> None:
    """Writes metrics as JSON (sorted keys, indent 2), atomically; numpy types are converted."""
    text = json.dumps(_json_safe(metrics, "metrics"), sort_keys=True, indent=2)
    with _atomic_path(Path(path)) as temporary:
        temporary.write_text(text + "\n")


def write_all(
    workdir: str | os.PathLike[str],
    predictions: Predictions,
    class_names: Sequence[str],
    history: Mapping[str, npt.ArrayLike],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes metrics.json, predictions.csv, confusion_matrix.png and curves.png.

    Each file is written atomically, and metrics.json last, so its presence marks a
    finished evaluation.

    Args:
        workdir: the run's directory (created if missing).
        predictions: the out-of-fold predictions of every seed.
        class_names: the C class names, in class-index order.
        history: training curves, see `figures.plot_curves`.
        extra: more entries of metrics.json (e.g. how hyper-parameters were selected).

    Returns:
        The metrics written to metrics.json (see `summarize`).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    metrics = {**summarize(predictions, class_names), **(extra or {})}
    write_predictions_csv(workdir / PREDICTIONS_CSV, predictions, len(metrics["class_names"]))
    with _atomic_path(workdir / CONFUSION_MATRIX_PNG) as temporary:
        figures.plot_confusion_matrix(
            temporary,
            metrics["confusion_matrix"],
            metrics["class_names"],
            title=f"UF1 {metrics['uf1']:.3f}  UAR {metrics['uar']:.3f}  "
            f"({metrics['n_samples']} samples x {len(metrics['seeds'])} seeds)",
        )
    with _atomic_path(workdir / CURVES_PNG) as temporary:
        figures.plot_curves(temporary, history)
    write_metrics_json(workdir / METRICS_JSON, metrics)
    return metrics


def merge_histories(histories: list[dict[str, list]]) -> dict[str, np.ndarray]:
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
