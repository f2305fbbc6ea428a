"""PNG plots of an evaluation: the pooled confusion matrix and the training curves.

Figures are drawn on matplotlib's Agg canvas directly, without pyplot, so that
plotting needs no display, leaves the process-wide backend alone and keeps no
figure alive after the file is written.
"""

import os
from collections.abc import Mapping, Sequence

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
            values.min(axis=1),
            values.max(axis=1),
            alpha=0.25,
            label=f"min-max over {values.shape[1]} replicas",
        )
        axes.plot(steps, values.mean(axis=1), label="mean")
        axes.set_ylabel(name)
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    all_axes[-1].set_xlabel("step")
    figure.suptitle("Training curves (replicas = LOSO folds x seeds)")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
