r"""Paired comparison of two finished runs: the difference in UF1/UAR with its 95% interval.

  python -m mer_jax.evaluate.compare runs/ltr3o runs/ltr3o_no_rank

Both runs must have predicted the same samples, in the same folds, with the same labels
and classes, under the same seeds: then the difference is paired, and its interval comes
from one subject bootstrap that resamples the same subjects for both runs
(`mer_jax.evaluate.bootstrap`). Runs on other data, folds, protocols or seeds are
refused with the reason. A difference whose interval holds 0 is not a difference this
data can show.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mer_jax import workdir
from mer_jax.errors import UserError
from mer_jax.evaluate import bootstrap, report


def _read(run: Path) -> tuple[report.Predictions, list[str]]:
    metrics_path, predictions_path = run / workdir.METRICS_JSON, run / workdir.PREDICTIONS_CSV
    if not metrics_path.is_file() or not predictions_path.is_file():
        raise UserError(
            f"{run} holds no finished run ({workdir.METRICS_JSON} and {workdir.PREDICTIONS_CSV} "
            "are written when a run ends); give the workdir of a finished run."
        )
    class_names = json.loads(metrics_path.read_text())["class_names"]
    return report.read_predictions_csv(predictions_path), class_names


def _rows(predictions: report.Predictions) -> dict[tuple[str, int], int]:
    return {
        (sample, seed): row
        for row, (sample, seed) in enumerate(
            zip(predictions.sample_id.tolist(), predictions.seed.tolist(), strict=True)
        )
    }


def compare(
    first: Path, second: Path, *, resamples: int = bootstrap.RESAMPLES
) -> dict[str, Any]:
    """The paired difference of two runs (first minus second).

    Raises:
        UserError: a run is not finished, or the runs are not on the same samples, folds,
            labels, classes and seeds (the message says which).
    """
    (a, classes_a), (b, classes_b) = _read(first), _read(second)
    if classes_a != classes_b:
        raise UserError(f"the runs have other classes: {classes_a} and {classes_b}.")
    seeds_a, seeds_b = sorted(set(a.seed.tolist())), sorted(set(b.seed.tolist()))
    if seeds_a != seeds_b:
        raise UserError(
            f"the runs have other seeds ({seeds_a} and {seeds_b}); a paired comparison needs "
            "the same seeds (rerun one with --config.seeds)."
        )
    rows_a, rows_b = _rows(a), _rows(b)
    if rows_a.keys() != rows_b.keys():
        only = sorted({s for s, _ in rows_a.keys() ^ rows_b.keys()})
        raise UserError(
            f"the runs predicted other samples ({len(only)} differ, e.g. {only[:3]}): they are "
            "on other data or protocols."
        )
    order = sorted(rows_a)
    ia, ib = [rows_a[k] for k in order], [rows_b[k] for k in order]
    for name in ("dataset", "subject", "fold", "label"):
        if not np.array_equal(getattr(a, name)[ia], getattr(b, name)[ib]):
            raise UserError(
                f"the runs assign other {name}s to the same samples: they use other folds, "
                "labels or data; a paired comparison needs the same splits."
            )

    def columns(predictions: report.Predictions, rows: list[int]) -> dict[str, np.ndarray]:
        dataset, subject = predictions.dataset[rows], predictions.subject[rows]
        return {
            "subject": np.char.add(np.char.add(dataset, "/"), subject),
            "seed": predictions.seed[rows],
            "label": predictions.label[rows],
            "pred": predictions.pred[rows],
        }

    result = bootstrap.paired_difference(
        columns(a, ia), columns(b, ib), len(classes_a), resamples=resamples
    )
    return {
        "first": str(first),
        "second": str(second),
        "seeds": seeds_a,
        "samples": len({s for s, _ in order}),
        **result,
        "method": {**bootstrap.METHOD, "resamples": resamples, "paired": True},
    }


def format_comparison(result: dict[str, Any]) -> str:
    """The comparison as lines for a terminal."""
    lines = [
        f"{result['first']} minus {result['second']}: {result['samples']} samples, "
        f"{result['subjects']} subjects, seeds {result['seeds']} (paired subject bootstrap, "
        f"{result['method']['resamples']} resamples)"
    ]
    for name in ("uf1", "uar"):
        scores = result[name]
        low, high = scores["interval"]
        verdict = "interval holds 0" if low <= 0 <= high else "interval excludes 0"
        lines.append(
            f"  {name.upper()}: {scores['first']:.3f} vs {scores['second']:.3f}, difference "
            f"{scores['difference']:+.3f} [95% {low:+.3f}, {high:+.3f}] ({verdict})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (2 for runs that cannot be compared)."""
    parser = argparse.ArgumentParser(
        prog="python -m mer_jax.evaluate.compare", description=__doc__
    )
    parser.add_argument("first", type=Path, help="workdir of a finished run")
    parser.add_argument("second", type=Path, help="workdir of a finished run")
    parser.add_argument("--resamples", type=int, default=bootstrap.RESAMPLES)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    try:
        result = compare(args.first, args.second, resamples=args.resamples)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(format_comparison(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
