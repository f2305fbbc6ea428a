"""Benchmarks: measured figures for the README, not tests."""

import json
import pathlib


def write_results(out: str | None, results: list[dict]) -> None:
    """Writes `results` as JSON to `out` (its folder created), when `--out` was given."""
    if out:
        path = pathlib.Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))
