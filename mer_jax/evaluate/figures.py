"""Every PNG a run writes: the pooled confusion matrix, the training curves, and what a
method's trained models show.

Models are pure modules: a model with something to show exposes arrays
(`MERModel.summaries`), and the functions here draw them. `METHOD_FIGURES` maps a model
name to its figure; the LOSO engine computes the summaries of every trained replica and
calls the figure once per run, in train and eval modes alike. MA2MI pre-training draws
`plot_reconstructions`.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so that
plotting needs no display, leaves the process-wide backend alone and keeps no
figure alive after the file is written.
"""

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def plot_confusion_matrix(
    path: str | os.PathLike[str],
    confusion: npt.ArrayLike,
    class_names: Sequence[str],
    title: str,
) -> None:
    """Writes a confusion matrix as a PNG: colours row-normalised, cells annotated with counts.

    Args:
        path: the PNG to write (written as PNG whatever its suffix).
        confusion: (C, C) counts, rows = true label, columns = prediction.
        class_names: the C class names, in class-index order.
        title: the figure title.
    """
    counts = np.asarray(confusion)
    num_classes = len(class_names)
    if counts.shape != (num_classes, num_classes):
        raise ValueError(
            f"confusion has shape {counts.shape} but there are {num_classes} class names; "
            f"expected ({num_classes}, {num_classes})"
        )
    totals = counts.sum(axis=1, keepdims=True)
    # Colour by the fraction of each true class (its recall on the diagonal) so that
    # small classes read as clearly as large ones; a class with no true sample keeps
    # an empty row instead of a division by zero.
    fractions = np.divide(
        counts, totals, out=np.zeros(counts.shape, dtype=np.float64), where=totals > 0
    )
    side = 2.0 + 0.9 * num_classes
    figure = _new_figure(side + 1.2, side)
    axes = figure.add_subplot()
    image = axes.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axes, label="fraction of true class")
    axes.set_xticks(range(num_classes), labels=list(class_names), rotation=45, ha="right")
    axes.set_yticks(range(num_classes), labels=list(class_names))
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for (row, column), count in np.ndenumerate(counts):
        axes.text(
            column,
            row,
            f"{count}\n{fractions[row, column]:.0%}",
            ha="center",
            va="center",
            fontsize="small",
            # Dark cells get white text so the count stays legible.
            color="white" if fractions[row, column] > 0.5 else "black",
        )
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=120)


def plot_curves(path: str | os.PathLike[str], history: Mapping[str, npt.ArrayLike]) -> None:
    """Writes training curves as a PNG: one subplot per metric, mean and min-max over replicas.

    Args:
        path: the PNG to write (written as PNG whatever its suffix).
        history: "step" of shape (S,) plus one or more named metrics (e.g. "loss",
            "accuracy" = training batch accuracy), each of shape (S, R) for R
            replicas (LOSO folds x seeds).
    """
    if "step" not in history:
        raise ValueError(f"history needs a 'step' entry; it has {sorted(history)}")
    steps = np.asarray(history["step"])
    if steps.ndim != 1:
        raise ValueError(f"history['step'] must have shape (steps,), got {steps.shape}")
    curves = {name: np.asarray(values, dtype=np.float64) for name, values in history.items()}
    del curves["step"]
    if not curves:
        raise ValueError("history has no metric to plot besides 'step'")
    for name, values in curves.items():
        if values.ndim != 2 or values.shape[0] != len(steps):
            raise ValueError(
                f"history[{name!r}] has shape {values.shape}; expected (steps, replicas) "
                f"with {len(steps)} steps"
            )
    figure = _new_figure(7.0, 0.8 + 2.4 * len(curves))
    all_axes = figure.subplots(len(curves), 1, sharex=True, squeeze=False)[:, 0]
    for axes, (name, values) in zip(all_axes, curves.items(), strict=True):
        # The band shows the spread over folds and seeds: a single bad fold or
        # diverging seed stands out instead of vanishing into the mean.
        axes.fill_between(
            steps,
            np.nanmin(values, axis=1),
            np.nanmax(values, axis=1),
            alpha=0.25,
            label=f"min-max over {values.shape[1]} replicas",
        )
        axes.plot(steps, np.nanmean(values, axis=1), label="mean")
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    all_axes[-1].set_xlabel("step")
    figure.suptitle("Training curves (replicas = LOSO folds x seeds)")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


def plot_spotting_timeline(
    path: str | os.PathLike[str],
    seconds: npt.ArrayLike,
    scores: npt.ArrayLike,
    valid: npt.ArrayLike,
    intervals: Sequence[tuple[float, float, str]],
    title: str,
) -> None:
    """Writes a spotted video's timeline as a PNG: the score over time, each spotted
    interval shaded by its type, and the stretches without a face marked.

    Args:
        path: the PNG to write (written as PNG whatever its suffix).
        seconds, scores, valid: (P,) each position's time, score and whether it was
            measured on the face.
        intervals: (onset, offset, "micro"/"macro") in seconds.
        title: the figure title.
    """
    seconds = np.asarray(seconds, np.float64)
    valid = np.asarray(valid, bool)
    shown = np.where(valid, np.asarray(scores, np.float64), np.nan)  # no line across a gap
    figure = _new_figure(10.0, 3.2)
    axes = figure.subplots()
    axes.plot(seconds, shown, color="black", linewidth=0.8, label="score")
    colours = {"micro": "tab:red", "macro": "tab:blue"}
    for kind in colours:
        spans = [(on, off) for on, off, k in intervals if k == kind]
        for index, (on, off) in enumerate(spans):
            axes.axvspan(on, off, color=colours[kind], alpha=0.3,
                         label=f"{kind} ({len(spans)})" if index == 0 else None)
    # Each maximal run of positions without a face, as one hatched band.
    edges = np.flatnonzero(np.diff(np.concatenate([[1], valid.astype(int), [1]])))
    for index, (start, end) in enumerate(zip(edges[::2], edges[1::2], strict=True)):
        axes.axvspan(seconds[start], seconds[end - 1], facecolor="none", edgecolor="grey",
                     hatch="//", label="no face" if index == 0 else None)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("score")
    axes.set_title(title, fontsize="medium")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


# -- what a method's trained models show ------------------------------------------------

DERE_GRL_PNG = "dere_grl_weights.png"


def plot_dere_grl(
    workdir: Path,
    summaries: Mapping[str, np.ndarray],
    labels: np.ndarray,
    class_names: Sequence[str],
    model: Any,
) -> list[str]:
    """DeRe-GRL: the RRM weight per facial component and class, and the learned adjacency.

    The weights are each replica's mean over the samples of a class (all samples of the
    dataset: a picture of what the models attend to, not an evaluation), summed over a
    component's M actions, then averaged over the replicas; the adjacency is
    softmax(relu(E E^T)) averaged over the replicas.

    Args:
        workdir: where `DERE_GRL_PNG` is written.
        summaries: `DeReGRL.summaries` of every replica, stacked: "rrm_weights" (R, N,
            groups, M) and/or "adjacency" (R, 68, 68).
        labels: (N,) the samples' classes.
        class_names: the classes, in label order.
        model: a DeReGRL of the run's settings, for the component names and ranges.

    Returns:
        The names of the files written (none without RRM and learned adjacency).
    """
    weights = adjacency = None
    if "rrm_weights" in summaries:
        per_group = np.asarray(summaries["rrm_weights"]).sum(-1)  # (R, N, groups)
        weights = np.stack(
            [
                per_group[:, labels == c].mean(axis=(0, 1))
                if (labels == c).any()
                else np.full(per_group.shape[-1], np.nan)
                for c in range(len(class_names))
            ]
        )  # (classes, groups)
    if "adjacency" in summaries:
        adjacency = np.asarray(summaries["adjacency"]).mean(axis=0)
    if weights is None and adjacency is None:
        return []
    num_replicas = len(next(iter(summaries.values())))
    group_names = model.group_names()
    ranges = dict(zip(model.component_names, model.component_ranges, strict=True))
    panels = [p for p in (weights, adjacency) if p is not None]
    figure = _new_figure(6.0 * len(panels), 5.2)
    column = 1
    if weights is not None:
        axes = figure.add_subplot(1, len(panels), column)
        column += 1
        image = axes.imshow(weights, cmap="viridis", vmin=0.0)
        figure.colorbar(image, ax=axes, label="RRM weight (sum over the component's actions)")
        axes.set_xticks(range(len(group_names)), labels=list(group_names), rotation=45, ha="right")
        axes.set_yticks(range(len(class_names)), labels=list(class_names))
        for (row, col), value in np.ndenumerate(weights):
            if np.isfinite(value):
                axes.text(
                    col,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if value < 0.6 * np.nanmax(weights) else "black",
                )
        axes.set_title(f"RRM weights per component and class\n(mean over {num_replicas} models)")
    if adjacency is not None:
        axes = figure.add_subplot(1, len(panels), column)
        image = axes.imshow(adjacency, cmap="magma", vmin=0.0)
        figure.colorbar(image, ax=axes, label="learned adjacency softmax(relu(E E^T))")
        ticks = {"jaw": 0, **{name: start for name, (start, _) in ranges.items()}}
        axes.set_xticks(list(ticks.values()), labels=list(ticks), rotation=45, ha="right")
        axes.set_yticks(list(ticks.values()), labels=list(ticks))
        for start in list(ticks.values())[1:]:  # component borders
            axes.axhline(start - 0.5, color="white", linewidth=0.4, alpha=0.5)
            axes.axvline(start - 0.5, color="white", linewidth=0.4, alpha=0.5)
        axes.set_title(f"Learned adjacency (68 landmarks)\n(mean over {num_replicas} models)")
    figure.tight_layout()
    figure.savefig(workdir / DERE_GRL_PNG, format="png", dpi=110)
    return [DERE_GRL_PNG]


# Model name -> its figure: (workdir, stacked summaries, labels, class names, a model of
# the run's settings) -> the files written. The engine calls it for models listed here.
MethodFigure = Callable[[Path, Mapping[str, np.ndarray], np.ndarray, Sequence[str], Any], list[str]]
METHOD_FIGURES: dict[str, MethodFigure] = {"dere_grl": plot_dere_grl}


# -- MA2MI pre-training ------------------------------------------------------------------


def _displayable(images: Any) -> np.ndarray:
    """(n, H, W, C) uint8 or [0, 1] float -> float (n, H, W, C) in [0, 1] for imshow."""
    images = np.asarray(images)
    if np.issubdtype(images.dtype, np.integer):
        images = images.astype(np.float32) / 255.0
    return np.clip(images.astype(np.float32), 0.0, 1.0)


def plot_reconstructions(
    path: str | os.PathLike[str], frames_t: Any, targets: Any, reconstructions: Any
) -> None:
    """Writes a PNG grid, one column per pair: I_t, the target I_{t+k}, the reconstruction,
    and |target - reconstruction| (one colour scale for the whole row).

    Args:
        path: the PNG to write.
        frames_t: (n, P, P, 3) uint8 (or [0, 1] float) input frames I_t, any size.
        targets: (n, R, R, C) float targets in [0, 1] (C = 1: drawn in grey).
        reconstructions: (n, R, R, C) float reconstructions.
    """
    frames_t = _displayable(frames_t)
    raw_targets = np.asarray(targets, np.float32)
    raw_reconstructions = np.asarray(reconstructions, np.float32)
    error = np.abs(raw_targets - raw_reconstructions).mean(axis=-1)
    rows = [
        ("I_t", frames_t),
        ("I_{t+k} (target)", _displayable(raw_targets)),
        ("reconstruction", _displayable(raw_reconstructions)),
    ]
    count = len(frames_t)
    figure = _new_figure(1.6 * max(count, 1) + 0.6, 1.7 * (len(rows) + 1))
    vmax = max(float(error.max()), 1e-6) if error.size else 1.0
    error_axes = []
    for column in range(count):
        for row, (label, images) in enumerate(rows):
            axes = figure.add_subplot(len(rows) + 1, count, row * count + column + 1)
            image = images[column]
            if image.shape[-1] == 1:
                axes.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                axes.imshow(image)
            axes.set_axis_off()
            if column == 0:
                axes.set_title(label, fontsize="small", loc="left")
        axes = figure.add_subplot(len(rows) + 1, count, len(rows) * count + column + 1)
        error_axes.append(axes)
        shown = axes.imshow(error[column], cmap="magma", vmin=0.0, vmax=vmax)
        axes.set_axis_off()
        if column == 0:
            axes.set_title("|target - reconstruction|", fontsize="small", loc="left")
    if count:
        figure.colorbar(shown, ax=error_axes, location="bottom", fraction=0.08, pad=0.04)
    figure.savefig(path, format="png", dpi=100)
