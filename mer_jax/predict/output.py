"""A prediction's output: the table printed and predictions_new.csv."""

import csv
import dataclasses
import pathlib
from typing import Any

import numpy as np

from mer_jax.preprocess import ClipFrames


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
