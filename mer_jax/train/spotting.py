"""Spotting runs: find the expression intervals of long videos, scored by
`mer_jax.evaluate.spotting` over every video.

- `BaselineRun` (task "spot_baseline"): training-free. Each position's motion score
  (`mer_jax.preprocess.long_video.motion_score`: flow magnitude less the head's own motion, the
  eyes left out) becomes intervals by `spot` with the video's own threshold.
- `SpottingRun` (task "spotting"): every position of every video becomes a window of
  the LOSO engine (`window_dataset`, subjects = the videos' subjects), a small network
  (`model.name`, e.g. "spotter") learns its class under LOSO with all folds stacked, and
  each held-out video's probabilities (the mean over seeds) become intervals by
  `spot_by_type`: the runs of "some expression" longer than a micro-expression, and the
  micro-expressions of P(micro), each of a micro-expression's typical length.

Both write metrics.json with `spotting.{micro,macro,overall}.{tp,fp,fn,precision,recall,
f1}` and per-subject counts, and spotted_intervals.csv (one row per spotted interval).
"""

import io
import json
import pathlib
from collections.abc import Mapping
from typing import Any, ClassVar

import ml_collections
import numpy as np

from mer_jax import guards
from mer_jax import workdir as layout
from mer_jax.data.dataset import VideoCorpus
from mer_jax.data.spotting import WINDOW_CLASSES, positions, window_dataset
from mer_jax.errors import UserError
from mer_jax.evaluate import report
from mer_jax.evaluate.spotting import (
    Interval,
    Spotted,
    by_type_settings,
    micro_max_frames,
    spot,
    spot_by_type,
    spot_settings,
    spotting_report,
    typed,
)
from mer_jax.preprocess.long_video import motion_score
from mer_jax.train import run
from mer_jax.train.engine import LosoRun

SPOTTED_CSV = "spotted_intervals.csv"


def _corpus(data: Any, task: str) -> VideoCorpus:
    if not isinstance(data, VideoCorpus):
        raise UserError(
            f"task {task!r} spots intervals in long videos; data.name must be a 'videos' "
            "dataset (synthetic_lv)."
        )
    return data


def write_spotting(
    workdir: pathlib.Path, corpus: VideoCorpus, spotted: Mapping[str, list[Spotted]]
) -> dict[str, Any]:
    """Scores the spotted intervals of every video of `corpus` and writes
    spotted_intervals.csv; returns metrics.json's `spotting` entry."""
    videos = {v.name: v for v in corpus.videos}
    limit = micro_max_frames(corpus.fps)
    scored = {
        name: (
            spotted[name],
            [
                Interval(int(on), int(off), str(kind))
                for on, off, kind in zip(v.onset, v.offset, v.interval_type, strict=True)
            ],
        )
        for name, v in videos.items()
    }
    found = spotting_report(scored, {name: v.subject for name, v in videos.items()}, limit)
    lines = io.StringIO()
    lines.write("video,subject,onset,apex,offset,score,type\n")
    for name, intervals in spotted.items():
        kinds = [x.kind for x in typed([s.interval for s in intervals], limit)]
        for s, kind in zip(intervals, kinds, strict=True):
            lines.write(
                f"{name},{videos[name].subject},{s.onset},{s.apex},{s.offset},"
                f"{s.score:.6g},{kind}\n"
            )
    guards.atomic_write_text(workdir / SPOTTED_CSV, lines.getvalue())
    return found


def spotting_lines(found: Mapping[str, Any]) -> str:
    """The launcher's lines of a `spotting` entry."""
    rows = []
    for kind in ("overall", "micro", "macro"):
        scores = found[kind]
        low, high = scores["f1_ci"]
        rows.append(
            f"spotting {kind:7s} F1 {scores['f1']:.3f} [{low:.3f}, {high:.3f}]  precision "
            f"{scores['precision']:.3f}  recall {scores['recall']:.3f}  (TP {scores['tp']}, "
            f"FP {scores['fp']}, FN {scores['fn']})"
        )
    return "\n".join(rows) + (
        f"\n({found['videos']} videos, IoU >= 0.5, one-to-one; [95% subject-bootstrap interval])"
    )


class BaselineRun(run.TrainingRun):
    """The training-free spotter over every video (module docstring); nothing is trained,
    so `evaluate` is `train`."""

    TASK = "spot_baseline"
    DATA_KIND: ClassVar[str] = "videos"

    def __init__(
        self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path, data: Any
    ) -> None:
        super().__init__(config, workdir)
        self.corpus = _corpus(data, self.TASK)

    @classmethod
    def check_workdir(
        cls, config: ml_collections.ConfigDict, workdir: pathlib.Path, mode: str
    ) -> None:
        """Nothing is trained: no checkpoints to check, and eval recomputes."""
        del config, workdir, mode

    def train(self) -> dict[str, Any]:
        flow_frames = self.corpus.flow_frames()
        spotted = {
            video.name: spot(
                motion_score(video.motion), positions(video, flow_frames),
                valid=video.valid, **spot_settings(self.config.spotting),
            )
            for video in self.corpus.videos
        }
        if not self.primary:
            return {}
        self.write_config()
        # What predicting on a new video reads: the build's frame rate and motion settings.
        guards.atomic_write_text(
            self.workdir / layout.DATASET_JSON,
            json.dumps(layout.corpus_record(self.corpus), indent=2, sort_keys=True),
        )
        found = write_spotting(self.workdir, self.corpus, spotted)
        metrics = {"task": self.TASK, "spotting": found}
        report.write_metrics_json(self.workdir / layout.METRICS_JSON, metrics)
        return metrics

    def evaluate(self) -> dict[str, Any]:
        return self.train()

    def summarize(self, metrics: dict[str, Any]) -> str:
        return spotting_lines(metrics["spotting"]) if metrics else ""


class SpottingRun(LosoRun):
    """The learned spotter under LOSO (module docstring): the engine's run on the windows,
    whose pooled out-of-fold probabilities are then spotted and scored."""

    TASK = "spotting"
    DATA_KIND: ClassVar[str] = "videos"

    def __init__(
        self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path, data: Any
    ) -> None:
        self.corpus = _corpus(data, self.TASK)
        super().__init__(config, workdir, window_dataset(self.corpus, config.spotting.radius))

    def extra_metrics(self, predictions: report.Predictions) -> dict[str, Any]:
        """Spots every video on its held-out probabilities (the mean over seeds): the
        longer runs of some expression, 1 - P(none), and the micro-expressions of
        P(micro) (`spot_by_type`), its positions without a face left out; writes
        spotted_intervals.csv (process 0)."""
        sample_ids = self.dataset["sample_id"]
        rows = np.searchsorted(sample_ids, predictions.sample_id)
        total = np.zeros((len(sample_ids), len(WINDOW_CLASSES)))
        np.add.at(total, rows, predictions.probs)
        counts = np.bincount(rows, minlength=len(sample_ids))
        probabilities = total / np.maximum(counts, 1)[:, None]
        flow_frames = self.corpus.flow_frames()
        settings = by_type_settings(self.config.spotting, self.corpus.fps)
        none, micro = WINDOW_CLASSES.index("none"), WINDOW_CLASSES.index("micro")
        spotted = {}
        for video in self.corpus.videos:
            own = np.flatnonzero(self.dataset["video"] == video.name)  # in time order
            at = positions(video, flow_frames)
            scores = np.zeros((len(at), len(WINDOW_CLASSES)))
            scores[:, none] = 1.0  # a position without a face: no expression
            scores[np.searchsorted(at, self.dataset["position"][own])] = probabilities[own]
            spotted[video.name] = spot_by_type(
                1.0 - scores[:, none],
                scores[:, micro],
                at,
                valid=video.valid,
                frames=(int(video.frame_numbers[0]), int(video.frame_numbers[-1])),
                **settings,
            )
        if not self.primary:
            return {}
        return {"spotting": write_spotting(self.workdir, self.corpus, spotted)}

    def summarize(self, metrics: dict[str, Any]) -> str:
        windows = "window classes (none/micro/macro): " + super().summarize(metrics)
        return windows + "\n" + spotting_lines(metrics["spotting"])

