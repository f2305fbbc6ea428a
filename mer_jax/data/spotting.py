"""What spotting reads of a long video: the positions of its stored motion and the
windows a learned spotter classifies (the training-free score of a position is
`mer_jax.preprocess.long_video.motion_score`, which prediction on a new clip uses too).

A video's motion is stored per sampled frame i as the flow from frame_numbers[i] to
frame_numbers[i + span] (`mer_jax.data.dataset.Video`): it describes the frames between,
so its *position* is the middle of that span, frame_numbers[i] + span x step / 2. Scores,
windows and spotted intervals all live at these positions.
"""

import numpy as np

from mer_jax.data.dataset import MERDataset, Video, VideoCorpus
from mer_jax.preprocess.long_video import normalised_motion

# The window classes of the learned spotter, in label order.
WINDOW_CLASSES = ("none", "micro", "macro")


def positions(video: Video, flow_frames: int) -> np.ndarray:
    """(N - span,) int: the frame each stored flow describes, the middle of its span."""
    return flow_positions(video.frame_numbers, len(video.motion), flow_frames)


def flow_positions(frame_numbers: np.ndarray, count: int, flow_frames: int) -> np.ndarray:
    """(count,) int: the positions of the first `count` flows starting at `frame_numbers`,
    each spanning `flow_frames` frames."""
    return np.asarray(frame_numbers[:count], np.int64) + flow_frames // 2


def position_labels(video: Video, flow_frames: int) -> np.ndarray:
    """(P,) the class of each position (`WINDOW_CLASSES`): the type of the interval it lies
    in, "none" outside every interval."""
    at = positions(video, flow_frames)
    labels = np.zeros(len(at), np.int64)
    for onset, offset, kind in zip(video.onset, video.offset, video.interval_type, strict=True):
        inside = (at >= onset) & (at <= offset)
        labels[inside] = WINDOW_CLASSES.index(str(kind))
    return labels


def motion_windows(motion: np.ndarray, radius: int) -> np.ndarray:
    """(P, 2 radius + 1, G, G, 2) float16: each position's motion with its `radius`
    neighbours on either side (zeros beyond the video's ends)."""
    padded = np.pad(motion, [(radius, radius)] + [(0, 0)] * (motion.ndim - 1))
    offsets = np.arange(2 * radius + 1)
    return padded[np.arange(len(motion))[:, None] + offsets].astype(np.float16)


def window_dataset(corpus: VideoCorpus, radius: int) -> MERDataset:
    """Every valid position of every video as a clip of the LOSO engine: its window of
    the video's normalised motion ("motion", `normalised_motion`), its class ("label",
    `WINDOW_CLASSES`), its video's subject; "video" and "position" say where it came
    from. A position without a face (`Video.valid` False)
    is neither trained on nor scored; within a window its motion is zero, as beyond the
    video's ends. Sample ids are "<video>/<position index>", zero-padded so that sorting
    them keeps each video's positions in time order. The metadata is the build's with
    "window", the sampled frames of a window."""
    flow_frames = corpus.flow_frames()
    parts: dict[str, list[np.ndarray]] = {
        key: [] for key in ("sample_id", "subject", "video", "position", "motion", "label")
    }
    for video in corpus.videos:
        kept = np.flatnonzero(video.valid)
        count = len(kept)
        parts["sample_id"].append(np.array([f"{video.name}/{i:07d}" for i in kept]))
        parts["subject"].append(np.full(count, video.subject))
        parts["video"].append(np.full(count, video.name))
        parts["position"].append(positions(video, flow_frames)[kept])
        windows = motion_windows(normalised_motion(video.motion, video.valid), radius)
        parts["motion"].append(windows[kept])
        parts["label"].append(position_labels(video, flow_frames)[kept])
    examples = {key: np.concatenate(values) for key, values in parts.items()}
    examples["dataset"] = np.full(len(examples["label"]), corpus.name)
    order = np.argsort(examples["sample_id"], kind="stable")
    examples = {key: values[order] for key, values in examples.items()}
    metadata = {**corpus.metadata, "window": 2 * radius + 1}
    return MERDataset(corpus.name, WINDOW_CLASSES, examples, metadata)
