"""Spot the expressions of one's own video with a spotting workdir, and optionally
recognise each one with a recognition workdir.

`launch.py --workdir W --mode predict --input VIDEO` where W is a spotting run (the
training-free baseline or the learned spotter):

1. The video's motion is extracted exactly as W's build extracted its videos' (the one
   long-video extractor, `mer_jax.preprocess.long_video.video_motion`, with the build's
   `MotionSpec` from W's dataset.json: a frame every step_ms, the same span, crop, grid
   and flow), in bounded chunks, the face checked every second.
2. Each position is scored as W scored its videos: the baseline's motion magnitude
   (`motion_score`), or the learned spotter's class probabilities on the video's
   normalised motion (`normalised_motion`), averaged over its trained (fold, seed)
   replicas as `--mode predict` does for recognition; the score shown is the
   probability of some expression, 1 - P(none).
3. The scores become intervals with W's own settings, as W's run made them
   (`mer_jax.evaluate.spotting.spot`; the learned spotter's `spot_by_type`: its longer
   runs of some expression, and the micro-expressions of its P(micro)); positions
   without a face score nothing and end any interval; an interval is micro when it
   lasts at most 0.5 s at the video's frame rate.
4. `--recognizer W2` (a recognition LOSO workdir) classifies every spotted interval as a
   clip with its onset, apex and offset (`mer_jax.predict.predict_clips`).

Outputs, in `--output DIR` (default W/predictions_new/<video name>/), written to a
staging folder and renamed at the end (whole or absent, never half-written):
intervals.csv (onset, apex, offset in the video's frame numbers, type, score; with
`--recognizer` the predicted class and each class's mean probability and spread),
timeline.png (the score over time, intervals shaded, stretches without a face hatched)
and notes.txt (gaps in the face, a file that ended early).

The frame rate is the container's; `--fps F` overrides it, and is needed where the
container has none or a nonsense one (and for a folder of frames, which has none).
"""

import csv
import dataclasses
import io
import logging
import pathlib
import shutil
import time
from typing import Any

import numpy as np

from mer_jax import guards
from mer_jax.data.spotting import WINDOW_CLASSES, flow_positions, motion_windows
from mer_jax.errors import UserError
from mer_jax.evaluate.figures import plot_spotting_timeline
from mer_jax.evaluate.spotting import (
    Interval,
    Spotted,
    by_type_settings,
    micro_max_frames,
    spot,
    spot_by_type,
    spot_settings,
    typed,
)
from mer_jax.predict import predict_clips
from mer_jax.predict.output import Predictions
from mer_jax.predict.requests import ClipRequest
from mer_jax.preprocess.clip import list_frames
from mer_jax.preprocess.long_video import (
    ChunkSource,
    MotionSpec,
    VideoMotion,
    folder_chunks,
    motion_score,
    normalised_motion,
    video_chunks,
    video_motion,
)
from mer_jax.preprocess.video import VIDEO_EXTENSIONS, is_video, probe_video
from mer_jax.workdir import Ensemble, TrainedBuild, read_build, read_config

log = logging.getLogger(__name__)

SPOTTING_TASKS = ("spotting", "spot_baseline")
INTERVALS_CSV = "intervals.csv"
TIMELINE_PNG = "timeline.png"
NOTES_TXT = "notes.txt"
PREDICTIONS_DIR = "predictions_new"
# Windows of the learned spotter predicted at once: bounds the memory of a long video.
_BATCH = 4096


@dataclasses.dataclass(frozen=True)
class SpottedVideo:
    """What spotting found in one video.

    Attributes:
        source: the video (or frame folder).
        fps: its frame rate.
        motion: its extracted motion (positions, validity, notes).
        positions: (P,) frame number of each position.
        scores: (P,) each position's score (0 where not valid).
        intervals: the spotted intervals, in time order.
        kinds: "micro" or "macro" of each interval, by its length.
        recognised: with --recognizer, the recognition of each interval.
    """

    source: pathlib.Path
    fps: float
    motion: VideoMotion
    positions: np.ndarray
    scores: np.ndarray
    intervals: list[Spotted]
    kinds: list[str]
    recognised: Predictions | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One dict an interval: the columns of intervals.csv."""
        rows = []
        extra = self.recognised.rows() if self.recognised else [{}] * len(self.intervals)
        for interval, kind, recognition in zip(self.intervals, self.kinds, extra, strict=True):
            row: dict[str, Any] = {
                "onset": interval.onset,
                "apex": interval.apex,
                "offset": interval.offset,
                "type": kind,
                "score": f"{interval.score:.6g}",
            }
            for key, value in recognition.items():
                if key == "pred_class" or key.startswith(("p_", "spread_")):
                    row[key] = value
            rows.append(row)
        return rows

    def csv_text(self) -> str:
        columns = ["onset", "apex", "offset", "type", "score"]
        if self.recognised:
            names = self.recognised.class_names
            columns += ["pred_class", *(f"p_{n}" for n in names), *(f"spread_{n}" for n in names)]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return text.getvalue()

    def table(self) -> str:
        """The intervals and notes as the lines printed."""
        lines = [
            f"{len(self.intervals)} interval(s) spotted in {self.source} (frames "
            f"{self.motion.frame_numbers[0]}..{self.motion.frame_numbers[-1]} sampled, "
            f"{self.fps:g} fps):"
        ]
        for row in self.rows():
            recognised = f"  {row['pred_class']}" if "pred_class" in row else ""
            lines.append(
                f"  onset {row['onset']:>7}  apex {row['apex']:>7}  offset {row['offset']:>7}  "
                f"{row['type']:<5}  score {row['score']}{recognised}"
            )
        lines += [f"note: {note}" for note in self.motion.notes]
        return "\n".join(lines)


def frame_rate(path: pathlib.Path, fps: float | None) -> float:
    """The frame rate to read `path` at: `fps` where given, else its container's.

    Raises:
        UserError: a rate given that is not positive, or none given for a folder of
            frames or a video whose container has none (or a nonsense one).
    """
    if fps is not None:
        if not fps > 0:
            raise UserError(f"--fps {fps} is not a frame rate; give a positive number")
        return float(fps)
    if path.is_dir():
        raise UserError(f"--input {path} is a folder of frames: give its frame rate with --fps")
    found, _ = probe_video(path, None)
    if found is None:
        raise UserError(
            f"--input {path} has no usable frame rate in its container (none, or a nonsense "
            "one); give it with --fps, e.g. --fps 30"
        )
    return found


def _chunks(path: pathlib.Path, step: int) -> ChunkSource:
    if is_video(path):
        return video_chunks(path, step)
    frames = list_frames(path) if path.is_dir() else {}
    if not frames:
        raise UserError(
            f"--input {path} is neither a video ({', '.join(VIDEO_EXTENSIONS)}) nor a folder "
            "of frame images (.jpg, .png, .bmp)"
        )
    return folder_chunks(sorted(frames.items()), step)


def _spotted(
    workdir: pathlib.Path, config: Any, motion: VideoMotion, at: np.ndarray, fps: float
) -> tuple[np.ndarray, list[Spotted], int]:
    """Each position's score by the workdir's spotter (0 where not valid), the intervals
    spotted as its run spotted them, and the replicas averaged (0 for the baseline)."""
    scores = np.zeros(len(motion.motion))
    if config.task == "spot_baseline":
        scores[motion.valid] = motion_score(motion.motion[motion.valid])
        intervals = spot(scores, at, valid=motion.valid, **spot_settings(config.spotting))
        return scores, intervals, 0
    ensemble = Ensemble(workdir, task="spotting")
    kept = np.flatnonzero(motion.valid)
    windows = motion_windows(normalised_motion(motion.motion, motion.valid),
                             config.spotting.radius)
    none, micro = WINDOW_CLASSES.index("none"), WINDOW_CLASSES.index("micro")
    micro_scores = np.zeros(len(motion.motion))
    for start in range(0, len(kept), _BATCH):
        rows = kept[start : start + _BATCH]
        probabilities = ensemble.predict({"motion": windows[rows]})["probabilities"]
        scores[rows] = 1.0 - probabilities[:, none]
        micro_scores[rows] = probabilities[:, micro]
    intervals = spot_by_type(
        scores,
        micro_scores,
        at,
        valid=motion.valid,
        frames=(int(motion.frame_numbers[0]), int(motion.frame_numbers[-1])),
        **by_type_settings(config.spotting, fps),
    )
    return scores, intervals, len(ensemble.replicas)


def spot_video(
    workdir: str | pathlib.Path,
    input_path: str | pathlib.Path,
    *,
    fps: float | None = None,
    output: str | pathlib.Path | None = None,
    recognizer: str | pathlib.Path | None = None,
) -> tuple[SpottedVideo, pathlib.Path]:
    """`--mode predict` on a spotting workdir (module docstring).

    Returns:
        what was spotted, and the output folder written.

    Raises:
        UserError: not a spotting workdir, a missing or unreadable input, no frame rate,
            no face in the video, an output folder holding other files, or what the
            recognizer's prediction raises.
    """
    workdir = pathlib.Path(workdir)
    path = pathlib.Path(input_path).expanduser()
    if not path.exists():
        raise UserError(f"--input {path} does not exist")
    config = read_config(workdir, task=None)
    if config.get("task") not in SPOTTING_TASKS:
        raise UserError(
            f"{workdir} holds a {config.get('task', 'loso')!r} run; spotting on a video needs "
            f"the workdir of a spotting run ({', '.join(SPOTTING_TASKS)})"
        )
    if config.task == "spotting" and "micro_length_s" not in config.spotting:
        raise UserError(
            f"{workdir} holds a learned spotter trained before spotters read each video's "
            "motion normalised and spotted micro-expressions apart (its config.json has no "
            "spotting.micro_length_s); train it again: python launch.py --config "
            "configs/spotting.py --workdir W"
        )
    build: TrainedBuild = read_build(workdir, config)
    spec = MotionSpec.from_metadata(build.metadata)
    rate = frame_rate(path, fps)
    out = pathlib.Path(output) if output else workdir / PREDICTIONS_DIR / path.stem
    _check_output(out)
    # A recognizer that cannot be used fails now, not after the whole video.
    recognition = Ensemble(recognizer) if recognizer else None
    step = spec.step_frames(rate)
    tic = time.perf_counter()
    motion = video_motion(_chunks(path, step), spec, source=str(path), progress=True)
    at = flow_positions(motion.frame_numbers, len(motion.motion), spec.span * step)
    scores, intervals, replicas = _spotted(workdir, config, motion, at, rate)
    kinds = [x.kind for x in typed([Interval(s.onset, s.offset) for s in intervals],
                                   micro_max_frames(rate))]
    log.info("spotted %s in %.1f s (%d replicas)", path, time.perf_counter() - tic, replicas)
    recognised = None
    if recognition is not None and intervals:
        recognised = predict_clips(recognition, [
            ClipRequest(path, s.onset, s.offset, s.apex, where=f"interval {i + 1}")
            for i, s in enumerate(intervals)
        ])
    found = SpottedVideo(path, rate, motion, at, scores, intervals, kinds, recognised)
    _write(found, out)
    return found, out


def _check_output(out: pathlib.Path) -> None:
    """An output folder is replaced only when it holds nothing but a prediction's files."""
    ours = {INTERVALS_CSV, TIMELINE_PNG, NOTES_TXT}
    if out.exists() and (not out.is_dir() or {p.name for p in out.iterdir()} - ours):
        raise UserError(
            f"--output {out} exists and holds other files; give a new or empty folder"
        )


def _write(found: SpottedVideo, out: pathlib.Path) -> None:
    """intervals.csv, timeline.png and notes.txt, staged and renamed into `out`."""

    def replace_previous() -> None:
        _check_output(out)
        if out.exists():
            shutil.rmtree(out)

    with guards.staged_folder(out, before_rename=replace_previous) as staging:
        (staging / INTERVALS_CSV).write_text(found.csv_text())
        (staging / NOTES_TXT).write_text("".join(f"{note}\n" for note in found.motion.notes))
        plot_spotting_timeline(
            staging / TIMELINE_PNG,
            found.positions / found.fps,
            found.scores,
            found.motion.valid,
            [(s.onset / found.fps, s.offset / found.fps, kind)
             for s, kind in zip(found.intervals, found.kinds, strict=True)],
            f"{found.source.name}: {len(found.intervals)} interval(s)",
        )
