"""What a release holds, before a long build: counts per emotion and protocol, and notes.

`release_summary` turns the records of `data_builders.read_release` into a JSON-ready
dict; `format_summary` prints it for people. Both are what
`python -m data_builders.build NAME --manual_dir DIR --dry_run` shows.
"""

from collections import Counter
from pathlib import Path
from typing import Any

from data_builders.records import ReleaseRecords
from mer_jax.data.protocols import PROTOCOLS, normalize_emotion

NOTE_KINDS = {"skipped": "skipped", "fixed": "fixed", "gap": "gaps", "note": "notes"}


def release_summary(
    release: ReleaseRecords,
    *,
    name: str,
    config: str,
    manual_dir: str | Path,
    default_protocol: str,
) -> dict[str, Any]:
    """Samples, subjects, counts per raw emotion and per protocol label, and every note.

    Protocols are those covering every database of the release; an emotion a protocol
    does not know is counted under "unknown_emotions" (the build would fail on it).
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
    }
    for kind, key in NOTE_KINDS.items():
        summary[key] = [
            {"where": note.where, "clip": note.clip, "reason": note.reason}
            for note in release.notes_of(kind)
        ]
    return summary


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
    for protocol, info in summary["protocols"].items():
        counts = ", ".join(f"{name} {count}" for name, count in info["counts"].items())
        default = " (builder default)" if info["default"] else ""
        lines.append(f"  protocol {protocol}{default}: {counts}")
        if info["unknown_emotions"]:
            lines.append(
                f"    UNKNOWN emotions (a build with this protocol fails): "
                f"{info['unknown_emotions']}"
            )
    for key in NOTE_KINDS.values():
        notes = summary[key]
        lines.append(f"  {key}: {len(notes)}")
        for note in notes:
            clip = f" clip {note['clip']}" if note["clip"] else ""
            lines.append(f"    {note['where']}{clip}: {note['reason']}")
    return "\n".join(lines)
