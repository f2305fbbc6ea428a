"""Spotting scores, implemented from the definition of the MEGC spotting task.

An interval is an inclusive range of frame numbers (onset, offset). A predicted interval
X and a ground-truth interval Y match when their frame sets overlap by
|X & Y| / |X | Y| >= 0.5. Matching is one-to-one: each ground truth is found at most
once and each prediction finds at most one; among all one-to-one matchings the largest
is taken (maximum bipartite matching), so the count does not depend on the order in
which intervals are listed. TP, FP and FN are pooled over every video of the evaluation,
videos without any expression included (all their predictions are false positives).

Micro and macro expressions are scored apart: a ground truth has its annotated type, a
prediction the type of its length (micro when it lasts at most `micro_max_frames`, the
database's 0.5 s), and each type's predictions match only that type's ground truths.
"Overall" adds the two types' counts. Precision, recall and F1 of a count with no
positive (TP + FP or TP + FN zero) are 0.

Where this differs from the public reference scripts, on purpose: those let one
prediction match several ground truths (counting it as several hits), compute a "UAR"
from precision, and score only videos that contain an expression (missing the false
positives of the others). Spot-then-recognise (`strs`) is the spotting F1 times the
recognition F1 (macro over classes) on the truly spotted intervals.

Scores to intervals (`spot`, the one way every spotter turns a score per position into
intervals): the score is smoothed by a moving average, a threshold is set per video from
its own statistics, mean + p x (max - mean) (the MEGC baselines' rule; a learned
spotter's probability adds a floor), and each maximal run of positions above it becomes
one interval: onset and offset its first and last position, apex its highest score.
A classifier that scores micro- and macro-expressions apart spots each type from its own
probability (`spot_by_type`). Positions without a face (`valid` False: a gap in the
video) are left out of all of it: they score nothing and end any run.
"""

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mer_jax.evaluate import bootstrap
from mer_jax.evaluate.metrics import classification_metrics

MATCH_IOU = 0.5
TYPES = ("micro", "macro")
# A prediction lasting at most this long is a micro-expression: the 0.5 s bound of the
# micro-expression definition used by CAS(ME)^2, SAMM and the MEGC spotting task.
MICRO_MAX_S = 0.5


def spot_settings(spotting: Mapping[str, Any]) -> dict[str, Any]:
    """`spot`'s keyword arguments from a config's `spotting` section."""
    return {
        "smooth_width": spotting["smooth_width"],
        "relative_threshold": spotting["relative_threshold"],
        "min_score": spotting["min_score"],
    }


def by_type_settings(spotting: Mapping[str, Any], fps: float) -> dict[str, Any]:
    """`spot_by_type`'s keyword arguments from a config's `spotting` section, at `fps`."""
    return spot_settings(spotting) | {
        "micro_max_frames": micro_max_frames(fps),
        "micro_frames": max(1, round(spotting["micro_length_s"] * fps)),
    }


def micro_max_frames(fps: float) -> int:
    """The longest micro-expression in frames at `fps` (`MICRO_MAX_S`)."""
    return round(MICRO_MAX_S * fps)


@dataclasses.dataclass(frozen=True)
class Spotted:
    """One spotted interval in frame numbers, with its peak score."""

    onset: int
    apex: int
    offset: int
    score: float

    @property
    def interval(self) -> "Interval":
        return Interval(self.onset, self.offset)


def smooth(scores: np.ndarray, width: int) -> np.ndarray:
    """The moving average of `scores` over `width` positions (odd; the ends average over
    the positions that exist)."""
    if width <= 1 or not len(scores):
        return np.asarray(scores, np.float64)
    kernel = np.ones(width)
    half = width // 2
    total = np.convolve(np.pad(scores, half), kernel, mode="valid")
    count = np.convolve(np.pad(np.ones(len(scores)), half), kernel, mode="valid")
    return total / count


def smooth_curve(scores: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
    """`smooth` over the valid positions only (an invalid one neither contributes nor gets
    a score: 0 there)."""
    scores = np.where(valid, np.asarray(scores, np.float64), 0.0)
    count = smooth(valid.astype(np.float64), width)
    return np.divide(smooth(scores, width), count, out=np.zeros_like(count), where=valid)


def spot(
    scores: np.ndarray,
    positions: np.ndarray,
    *,
    smooth_width: int,
    relative_threshold: float,
    min_score: float = 0.0,
    valid: np.ndarray | None = None,
    length: int | None = None,
    frames: tuple[int, int] | None = None,
) -> list[Spotted]:
    """The intervals of one video from a score per position (module docstring).

    Args:
        scores: (P,) the spotter's score of each position.
        positions: (P,) increasing frame numbers of the positions.
        smooth_width: the moving average's width in positions (1: none).
        relative_threshold: p of the threshold mean + p x (max - mean), in [0, 1].
        min_score: a floor under that threshold (a probability's 0.5; 0: none).
        valid: (P,) bool, False where the video has no face (a gap): such a position is
            left out of the smoothing and the statistics and ends any interval (None: all
            valid).
        length: None: each run is the interval from its first to its last position; a
            number of frames: each run is the interval of that length centred on its apex
            (a micro-expression's score says where one is better than how long: a run
            of two positions is one step long, too short to overlap half of one).
        frames: (first, last) frame of the video: an interval of `length` centred near
            either end is cut to them (None: not cut).

    Returns:
        The intervals in time order (none when no position exceeds the threshold).
    """
    valid = np.ones(len(scores), bool) if valid is None else np.asarray(valid, bool)
    curve = smooth_curve(scores, valid, smooth_width)
    if not valid.any():
        return []
    mean = curve[valid].mean()
    threshold = max(mean + relative_threshold * (curve[valid].max() - mean), min_score)
    above = np.concatenate([[False], (curve > threshold) & valid, [False]])
    starts = np.flatnonzero(~above[:-1] & above[1:])
    ends = np.flatnonzero(above[:-1] & ~above[1:])  # one past each run
    spotted = []
    for start, end in zip(starts, ends, strict=True):
        peak = start + int(np.argmax(curve[start:end]))
        apex = int(positions[peak])
        onset, offset = int(positions[start]), int(positions[end - 1])
        if length is not None:
            onset = apex - (length - 1) // 2
            offset = onset + length - 1
            if frames is not None:
                onset, offset = max(onset, frames[0]), min(offset, frames[1])
        spotted.append(Spotted(onset, apex, offset, float(curve[peak])))
    return spotted


def spot_by_type(
    expression: np.ndarray,
    micro: np.ndarray,
    positions: np.ndarray,
    *,
    micro_max_frames: int,
    micro_frames: int,
    valid: np.ndarray | None = None,
    frames: tuple[int, int] | None = None,
    **settings: Any,
) -> list[Spotted]:
    """The intervals of one video from a classifier's probabilities per position: the
    runs of some expression (`expression`, 1 - P(none)) longer than a micro-expression can
    last are macro-expressions, as `spot` finds them; micro-expressions are the runs of
    `micro` (P(micro)), each the interval of `micro_frames` centred on its apex.

    A run of 1 - P(none) as short as a micro-expression would be typed micro by its
    length alone, and its extent (a few positions a step apart) is too coarse to overlap
    half of one: the network's own micro score says which are micro, a micro-expression's
    typical length how long.

    Args:
        expression, micro: (P,) the two probabilities of each position.
        positions, valid, frames: as in `spot`.
        micro_max_frames: the longest micro-expression (`micro_max_frames(fps)`).
        micro_frames: the length of a spotted micro-expression, in frames.
        settings: `spot`'s smooth_width, relative_threshold and min_score, for both.

    Returns:
        The intervals in time order.
    """
    longer = [
        s for s in spot(expression, positions, valid=valid, **settings)
        if s.offset - s.onset + 1 > micro_max_frames
    ]
    micros = spot(micro, positions, valid=valid, length=micro_frames, frames=frames, **settings)
    return sorted(longer + micros, key=lambda s: (s.onset, s.offset))


@dataclasses.dataclass(frozen=True)
class Interval:
    """An inclusive frame range; `kind` "micro" or "macro" (a ground truth's annotation;
    a prediction's is set from its length by `typed`)."""

    onset: int
    offset: int
    kind: str = ""

    def __post_init__(self) -> None:
        if self.offset < self.onset:
            raise ValueError(f"interval onset {self.onset} is after its offset {self.offset}")

    @property
    def length(self) -> int:
        return self.offset - self.onset + 1


def iou(a: Interval, b: Interval) -> float:
    """|A & B| / |A | B| of two inclusive frame ranges."""
    overlap = min(a.offset, b.offset) - max(a.onset, b.onset) + 1
    if overlap <= 0:
        return 0.0
    return overlap / (a.length + b.length - overlap)


def match(predicted: Sequence[Interval], truth: Sequence[Interval]) -> list[tuple[int, int]]:
    """The largest one-to-one set of (prediction, ground truth) index pairs whose IoU is
    at least 0.5 (augmenting paths; the intervals of one video are few)."""
    candidates = [
        [t for t, y in enumerate(truth) if iou(x, y) >= MATCH_IOU] for x in predicted
    ]
    owner: dict[int, int] = {}  # ground truth -> prediction

    def augment(p: int, seen: set[int]) -> bool:
        for t in candidates[p]:
            if t in seen:
                continue
            seen.add(t)
            if t not in owner or augment(owner[t], seen):
                owner[t] = p
                return True
        return False

    for p in range(len(predicted)):
        augment(p, set())
    return sorted((p, t) for t, p in owner.items())


def typed(predicted: Iterable[Interval], micro_max_frames: int) -> list[Interval]:
    """Predictions typed by their length: micro when at most `micro_max_frames` long."""
    return [
        dataclasses.replace(x, kind="micro" if x.length <= micro_max_frames else "macro")
        for x in predicted
    ]


def _scores(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def spotting_scores(
    videos: Mapping[str, tuple[Sequence[Interval], Sequence[Interval]]],
    micro_max_frames: int,
) -> dict[str, Any]:
    """Pooled spotting scores of `videos`: name -> (predicted intervals, ground truths).

    Returns {"micro", "macro", "overall"} each with tp, fp, fn, precision, recall, f1,
    and "matches": name -> the matched (prediction, ground truth) pairs of each video.

    Raises:
        ValueError: a ground truth whose kind is neither "micro" nor "macro".
    """
    counts = {kind: np.zeros(3, int) for kind in TYPES}
    matches: dict[str, list[tuple[Interval, Interval]]] = {}
    for name, (predicted, truth) in videos.items():
        unknown = {y.kind for y in truth} - set(TYPES)
        if unknown:
            raise ValueError(f"video {name}: ground-truth kinds {sorted(unknown)}; use {TYPES}")
        predicted = typed(predicted, micro_max_frames)
        matches[name] = []
        for kind in TYPES:
            xs = [x for x in predicted if x.kind == kind]
            ys = [y for y in truth if y.kind == kind]
            pairs = match(xs, ys)
            matches[name] += [(xs[p], ys[t]) for p, t in pairs]
            counts[kind] += (len(pairs), len(xs) - len(pairs), len(ys) - len(pairs))
    result: dict[str, Any] = {kind: _scores(*map(int, counts[kind])) for kind in TYPES}
    result["overall"] = _scores(*map(int, sum(counts.values())))
    result["matches"] = matches
    return result


def spotting_report(
    videos: Mapping[str, tuple[Sequence[Spotted], Sequence[Interval]]],
    subjects: Mapping[str, str],
    micro_max_frames: int,
) -> dict[str, Any]:
    """metrics.json's `spotting` entry: the pooled scores of every video
    (`spotting_scores`, without the matches), the micro_max_frames used, per subject the
    pooled tp, fp, fn of its own videos (`subjects`: video name -> subject), overall and
    by type, and each type's `f1_ci`: the 95% subject-bootstrap interval of its F1
    (subjects drawn with replacement, their counts pooled, as `bootstrap` does for UF1).

    Args:
        videos: name -> (spotted intervals, ground truths).
    """

    def scored(names: Iterable[str]) -> dict[str, Any]:
        chosen = {name: ([s.interval for s in videos[name][0]], videos[name][1]) for name in names}
        found = spotting_scores(chosen, micro_max_frames)
        del found["matches"]
        return found

    report: dict[str, Any] = scored(videos)
    report["micro_max_frames"] = micro_max_frames
    report["videos"] = len(videos)
    report["subjects"] = {}
    for subject in sorted(set(subjects.values())):
        own = scored(name for name in videos if subjects[name] == subject)
        report["subjects"][subject] = {
            kind: {key: own[kind][key] for key in ("tp", "fp", "fn")}
            for kind in (*TYPES, "overall")
        }
    weights = bootstrap.resample_weights(len(report["subjects"]), bootstrap.RESAMPLES, seed=0)
    tail = 100 * (1 - bootstrap.LEVEL) / 2
    for kind in (*TYPES, "overall"):
        counts = np.array(
            [[own[kind][key] for key in ("tp", "fp", "fn")] for own in report["subjects"].values()]
        )
        tp, fp, fn = (weights @ counts).T.astype(np.float64)
        f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=2 * tp + fp + fn > 0)
        report[kind]["f1_ci"] = [float(np.percentile(f1, q)) for q in (tail, 100 - tail)]
    return report


def strs(
    spotting_f1: float, true_labels: Sequence[int], predicted_labels: Sequence[int], classes: int
) -> dict[str, float]:
    """Spot-then-recognise: the spotting F1 times the recognition F1 (macro over
    classes) on the truly spotted intervals (`true_labels`, `predicted_labels`: one per
    matched interval). No truly spotted interval: an analysis F1 of 0."""
    analysis = 0.0
    if len(true_labels):
        analysis = classification_metrics(
            np.asarray(true_labels), np.asarray(predicted_labels), classes
        )["uf1"]
    return {"spotting_f1": spotting_f1, "analysis_f1": analysis, "strs": spotting_f1 * analysis}
