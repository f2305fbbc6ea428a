"""What a release holds, before a long build: the dry run's summary.

For a long-video release, `video_release_summary` counts videos, subjects and micro
and macro intervals with the same note lists. For a clip dataset, `release_summary`
counts samples and subjects, per raw emotion and
per protocol label and how many AU cells were read, with every note on the rows (the
keys are documented in docs/datasets.md, "Checking a release"); for a pair corpus read from a
folder,
`pair_release_summary` counts clips, subjects, frame rates with their k and the pairs
a build would cut. Both are JSON-ready dicts, printed for people by `format_summary` /
`format_pair_summary`; `dry_run_summary` picks the pair for a builder. They are what
`python -m data_builders.cli NAME --manual_dir DIR --dry_run` shows.
"""

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_builders.base import ManualDirBuilder
from data_builders.macro_pairs import PairOptions, pair_step, plan_pairs
from data_builders.records import (
    ClipRecord,
    Interval,
    MacroRelease,
    Release,
    ReleaseRecords,
    VideoRelease,
)
from mer_jax.data.action_units import parse_action_units
from mer_jax.data.protocols import PROTOCOLS, normalize_emotion

# Note kind (`data_builders.records.NOTE_KINDS`) -> its key in the summary.
NOTE_KEYS = {
    "skipped": "skipped",
    "fixed": "fixed",
    "gap": "gaps",
    "au": "masked_action_units",
    "note": "notes",
}


def dry_run_summary(
    builder: ManualDirBuilder, release: Release, manual_dir: str | Path
) -> tuple[dict[str, Any], str]:
    """The summary of a release read by `builder` (its variant), and its text."""
    config = builder.builder_config
    if isinstance(release, VideoRelease):
        summary = video_release_summary(
            release, name=builder.name, config=config.name, manual_dir=manual_dir
        )
        return summary, format_video_summary(summary)
    if isinstance(release, MacroRelease):
        summary = pair_release_summary(
            release,
            name=builder.name,
            config=config.name,
            manual_dir=manual_dir,
            options=config.pair_options(),
        )
        return summary, format_pair_summary(summary)
    summary = release_summary(
        release,
        name=builder.name,
        config=config.name,
        manual_dir=manual_dir,
        default_protocol=builder.PROTOCOL,
    )
    return summary, format_summary(summary)


def release_summary(
    release: ReleaseRecords,
    *,
    name: str,
    config: str,
    manual_dir: str | Path,
    default_protocol: str,
) -> dict[str, Any]:
    """Samples, subjects, counts per raw emotion and per protocol label, AU cells read,
    and every note.

    Protocols are those covering every database of the release; an emotion a protocol
    does not know is counted under "unknown_emotions" (loading the build with that
    protocol would fail on it; the builder's own protocol skips such rows).
    """
    records = release.records
    datasets = sorted({record.dataset for record in records})
    protocols = {}
    for protocol in PROTOCOLS.values():
        if not all(dataset in protocol.vocabularies for dataset in datasets):
            continue
        counts = Counter()
        unknown = Counter()
        for record in records:
            vocabulary = protocol.vocabularies[record.dataset]
            key = normalize_emotion(record.emotion)
            if key not in vocabulary:
                unknown[record.emotion] += 1
            else:
                label = vocabulary[key]
                counts["excluded" if label is None else protocol.class_names[label]] += 1
        protocols[protocol.name] = {
            "default": protocol.name == default_protocol,
            "counts": {
                class_name: counts[class_name] for class_name in (*protocol.class_names, "excluded")
            },
            "unknown_emotions": dict(unknown),
        }
    summary: dict[str, Any] = {
        "dataset": name,
        "config": config,
        "manual_dir": str(manual_dir),
        "annotation": str(release.annotation),
        "samples": len(records),
        "subjects": len({record.subject for record in records}),
        "apex_annotated": sum(record.apex_annotated for record in records),
        "per_dataset": {
            dataset: {
                "samples": sum(record.dataset == dataset for record in records),
                "subjects": len({r.subject for r in records if r.dataset == dataset}),
            }
            for dataset in datasets
        },
        "emotions": dict(Counter(record.emotion for record in records).most_common()),
        "protocols": protocols,
        "action_units": _action_unit_counts(records),
    }
    return summary | _note_lists(release)


def _note_lists(release: ReleaseRecords | VideoRelease) -> dict[str, list[dict[str, str]]]:
    """Every note of a release, by kind (`NOTE_KEYS`), in sheet order."""
    return {
        key: [
            {"where": note.where, "clip": note.clip, "reason": note.reason}
            for note in sorted(release.notes_of(kind), key=lambda note: _natural(note.where))
        ]
        for kind, key in NOTE_KEYS.items()
    }


def video_release_summary(
    release: VideoRelease, *, name: str, config: str, manual_dir: str | Path
) -> dict[str, Any]:
    """Videos, subjects, intervals (micro, macro) and every note of a long-video release.

    Videos without an interval are counted among `videos` (they count in spotting: what
    is spotted in them is a false positive) and again under `videos_without_intervals`.
    """
    videos = release.videos
    intervals = [interval for video in videos for interval in video.intervals]
    kinds = Counter(interval.interval_type for interval in intervals)
    frames = sum(len(video.frame_numbers) for video in videos)
    fps = videos[0].fps if videos else 0.0
    summary: dict[str, Any] = {
        "dataset": name,
        "config": config,
        "manual_dir": str(manual_dir),
        "annotation": str(release.annotation),
        "fps": fps,
        "videos": len(videos),
        "subjects": len({video.subject for video in videos}),
        "intervals": {"micro": kinds["micro"], "macro": kinds["macro"]},
        "videos_without_intervals": sum(not video.intervals for video in videos),
        "apex_annotated": sum(interval.apex_annotated for interval in intervals),
        "frames": frames,
        "minutes": round(frames / fps / 60.0, 1) if fps else 0.0,
        "emotions": dict(Counter(interval.emotion for interval in intervals).most_common()),
        "action_units": _action_unit_counts(intervals),
    }
    return summary | _note_lists(release)


def _natural(where: str) -> list[str | int]:
    """A sort key putting "x.xlsx row 9" before "x.xlsx row 10"."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", where)]


def _action_unit_counts(records: Sequence[ClipRecord | Interval]) -> dict[str, int]:
    """How many clips (or intervals) have an AU target ("known"), an AU cell that cannot be
    read ("masked") or none coded ("not_coded")."""
    parsed = [parse_action_units(record.action_units_raw) for record in records]
    return {
        "known": sum(units.known for units in parsed),
        "masked": sum(bool(units.problem) for units in parsed),
        "not_coded": sum(not units.known and not units.problem for units in parsed),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as lines of text for a terminal."""
    lines = [
        f"{summary['dataset']} (config {summary['config']}) from {summary['manual_dir']}",
        f"  annotation: {summary['annotation']}",
        f"  samples: {summary['samples']}   subjects: {summary['subjects']}   "
        f"apex annotated: {summary['apex_annotated']}",
    ]
    if len(summary["per_dataset"]) > 1:
        parts = ", ".join(
            f"{dataset} {counts['samples']} ({counts['subjects']} subjects)"
            for dataset, counts in summary["per_dataset"].items()
        )
        lines.append(f"  per dataset: {parts}")
    emotions = ", ".join(f"{emotion} {count}" for emotion, count in summary["emotions"].items())
    lines.append(f"  emotions: {emotions}")
    units = summary["action_units"]
    lines.append(
        f"  action units: {units['known']} read, {units['masked']} masked (unreadable), "
        f"{units['not_coded']} not coded"
    )
    for protocol, info in summary["protocols"].items():
        counts = ", ".join(f"{name} {count}" for name, count in info["counts"].items())
        default = " (builder default)" if info["default"] else ""
        lines.append(f"  protocol {protocol}{default}: {counts}")
        if info["unknown_emotions"]:
            lines.append(
                f"    UNKNOWN emotions (a build with this protocol fails): "
                f"{info['unknown_emotions']}"
            )
    return "\n".join(lines + _note_lines(summary))


def _note_lines(summary: dict[str, Any]) -> list[str]:
    """The note lists of a summary, for a terminal."""
    lines = []
    for key in NOTE_KEYS.values():
        notes = summary[key]
        lines.append(f"  {key}: {len(notes)}")
        for note in notes:
            clip = f" clip {note['clip']}" if note["clip"] else ""
            lines.append(f"    {note['where']}{clip}: {note['reason']}")
    return lines


def format_video_summary(summary: dict[str, Any]) -> str:
    """The summary of `video_release_summary` as lines of text for a terminal."""
    intervals = summary["intervals"]
    units = summary["action_units"]
    lines = [
        f"{summary['dataset']} (config {summary['config']}) from {summary['manual_dir']}",
        f"  annotation: {summary['annotation']}",
        f"  videos: {summary['videos']} ({summary['videos_without_intervals']} without "
        f"intervals)   subjects: {summary['subjects']}   {summary['minutes']} min at "
        f"{summary['fps']:g} fps",
        f"  intervals: micro {intervals['micro']}, macro {intervals['macro']}   apex "
        f"annotated: {summary['apex_annotated']}",
        f"  action units: {units['known']} read, {units['masked']} masked (unreadable), "
        f"{units['not_coded']} not coded",
    ]
    return "\n".join(lines + _note_lines(summary))


def pair_release_summary(
    release: MacroRelease,
    *,
    name: str,
    config: str,
    manual_dir: str | Path,
    options: PairOptions,
) -> dict[str, Any]:
    """Clips, subjects, frame rates, k and the pairs a build would cut (the dry run).

    Pairs of videos whose container gives no frame count are not counted
    ("clips_of_unknown_length").
    """
    pairs = 0
    short: list[str] = []
    unknown = 0
    for clip in release.clips:
        if not clip.frame_numbers:
            unknown += 1
            continue
        count = len(
            plan_pairs(
                clip.frame_numbers, pair_step(clip.fps, options.k_at_30fps), options.pairs_per_clip
            )
        )
        pairs += count
        if not count:
            short.append(f"{clip.clip_id} ({len(clip.frame_numbers)} frames)")
    fps = Counter(clip.fps for clip in release.clips)
    return {
        "dataset": name,
        "config": config,
        "manual_dir": str(manual_dir),
        "source": str(release.source),
        "clips": len(release.clips),
        "subjects": len({clip.subject for clip in release.clips}),
        "subject_names": sorted({clip.subject for clip in release.clips}),
        "fps": {f"{rate:g}": count for rate, count in sorted(fps.items())},
        "k": {f"{rate:g}": pair_step(rate, options.k_at_30fps) for rate in sorted(fps)},
        "pairs": pairs,
        "clips_of_unknown_length": unknown,
        "clips_without_pairs": short,
        "notes": [
            {"kind": note.kind, "where": note.where, "clip": note.clip, "reason": note.reason}
            for note in release.notes
        ],
    }


def format_pair_summary(summary: dict[str, Any]) -> str:
    """The dry-run summary of `pair_release_summary` for people."""
    fps = ", ".join(
        f"{rate} fps: {count} clips (k={summary['k'][rate]})"
        for rate, count in summary["fps"].items()
    )
    lines = [
        f"{summary['dataset']} ({summary['config']}) from {summary['source']}",
        f"clips: {summary['clips']}   subjects: {summary['subjects']}   pairs: {summary['pairs']}",
        f"frame rates: {fps}",
    ]
    if summary["clips_of_unknown_length"]:
        lines.append(
            f"{summary['clips_of_unknown_length']} video(s) without a frame count in their "
            "container: their pairs are counted when they are read"
        )
    if summary["clips_without_pairs"]:
        lines.append(f"no pair (shorter than k+1 frames): {len(summary['clips_without_pairs'])}")
        lines += [f"  {clip}" for clip in summary["clips_without_pairs"]]
    if summary["notes"]:
        lines.append(f"notes: {len(summary['notes'])}")
        lines += [
            f"  {note['kind']}: {note['where']}"
            + (f" clip {note['clip']}" if note["clip"] else "")
            + f": {note['reason']}"
            for note in summary["notes"]
        ]
    return "\n".join(lines)
