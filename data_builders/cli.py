"""Check or build a MER dataset from the command line.

    python -m data_builders.cli casme2 --manual_dir ~/CASME2 --dry_run
    python -m data_builders.cli casme2 --manual_dir ~/CASME2 --summary_json casme2.json
    python -m data_builders.cli smic --builder_config cropped --manual_dir ~/SMIC \\
        --data_dir ~/mer_data --overrides.crop_size=64

The flags are the fields of a config's `data` section (`--config.data.manual_dir`,
`--config.data.builder_config`, ... of launch.py), so one dataset is named the same way
in both places: `--overrides.KEY=VALUE` changes one builder config field (the value is
read as an int, else a float, else true/false, else a string).

`python -m data_builders.export` takes the same flags (one parser: `add_build_arguments`)
and writes a build in the layouts other MER code reads.

`--dry_run` reads the annotation and lists the frame folders (no image is opened) and
prints the number of samples and subjects, the counts per raw emotion and per protocol
label, and every row skipped, fixed or noted with its reason, all in one pass;
`--summary_json PATH` also writes them as JSON (its keys: docs/datasets.md, "Checking a release").
For the long-video databases (casme_sq, samm_lv, casme3_lv) it prints the videos,
subjects and micro and macro intervals, with the same notes.
For the macro-expression pair corpora read from a folder (casme3_macro, ckplus,
video_folder) it prints the clips, subjects, frame rates with their k, the pairs a build
would cut and the clips too short for one. Without `--dry_run` the same summary is
printed and the dataset is built into `--data_dir` (the cache the training configs
read; a complete build there is reused); clips that cannot be built (no face found, an
unreadable frame) are skipped and named.

Skipped rows and clips never stop a build by default; `--strict` makes any of them exit
2 (the dry run too). `--errata FILE` applies a CSV of the user's own corrections
(`data_builders.errata`); `--annotation PATH` (PATH#SHEET for one sheet of a workbook,
repeatable for the parts of megc2019) chooses the coding sheet where a release holds
several candidates.
"""

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from data_builders.base import ManualDirBuilder, ReadOptions
from data_builders.errata import read_errata
from data_builders.loading import build, read_release, skipped_in_build
from data_builders.reading import check_usable
from data_builders.records import ReleaseRecords, VideoRelease, check_strict
from data_builders.registry import AnyBuilder, builder_names, default_data_dir, get_builder
from data_builders.summary import dry_run_summary
from mer_jax.errors import UserError

OVERRIDES_FLAG = "--overrides."


def override_value(text: str) -> Any:
    """An override value from the command line: int, else float, else bool, else str."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def split_overrides(
    argv: Sequence[str], flag: str = OVERRIDES_FLAG
) -> tuple[list[str], dict[str, Any]]:
    """(the other arguments, the overrides) of `{flag}KEY=VALUE` or `{flag}KEY VALUE`
    flags (`--overrides.` here; launch.py's `--config.data.overrides.`).

    Raises:
        UserError: a flag without a key or without a value.
    """
    rest: list[str] = []
    overrides: dict[str, Any] = {}
    args = iter(argv)
    for arg in args:
        if not arg.startswith(flag):
            rest.append(arg)
            continue
        key, sep, value = arg[len(flag) :].partition("=")
        if not sep:
            value = next(args, None)
        if not key or value is None or value.startswith("--"):
            raise UserError(f"expected {flag}KEY=VALUE, got {arg!r}")
        overrides[key] = override_value(value)
    return rest, overrides


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that choose and build a dataset (the dataset name, the release, the
    cache, the builder config, strictness, errata, sheets), shared by every command that
    reads a build (this one, `data_builders.export`); `--overrides.KEY=VALUE` is read by
    `parse_build_args`."""
    parser.add_argument(
        "name",
        help=f"dataset: {', '.join(builder_names('clips'))}; macro-expression pair corpora: "
        f"{', '.join(builder_names('pairs'))}; long videos: {', '.join(builder_names('videos'))}",
    )
    parser.add_argument("--manual_dir", help="the licensed release folder")
    parser.add_argument("--data_dir", default=default_data_dir(), help="built datasets cache")
    parser.add_argument("--builder_config", help="builder config, e.g. raw or cropped")
    parser.add_argument("--workers", type=int, help="processes (default: all cores)")
    parser.add_argument(
        "--strict", action="store_true", help="exit 2 if any row or clip is skipped"
    )
    parser.add_argument("--errata", type=Path, help="a CSV of your own corrections")
    parser.add_argument(
        "--annotation",
        type=Path,
        action="append",
        default=[],
        help="the coding sheet to read where the release holds several (PATH or PATH#SHEET)",
    )


def parse_build_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None
) -> tuple[argparse.Namespace, dict[str, Any]]:
    """(the parsed arguments, the builder variant: data_dir, config, overrides, reading).

    Exits 2 through the parser on a malformed flag; raises UserError for an unreadable
    errata file.
    """
    try:
        rest, overrides = split_overrides(sys.argv[1:] if argv is None else argv)
    except UserError as error:
        parser.error(str(error))
    args = parser.parse_args(rest)
    variant = {
        "data_dir": args.data_dir,
        "config": args.builder_config,
        "overrides": overrides,
        "reading": ReadOptions(
            strict=args.strict,
            errata=read_errata(args.errata) if args.errata else (),
            annotations=tuple(args.annotation),
        ),
    }
    return args, variant


def print_built(builder: AnyBuilder) -> None:
    """What a finished (or found) build holds, and the rows and clips it skipped."""
    size = builder.info.splits["train"].num_examples
    print(
        f"built {builder.name}/{builder.builder_config.name}: {size} examples in "
        f"{builder.data_dir}"
    )
    skipped = skipped_in_build(builder)
    if skipped:
        print(f"skipped ({len(skipped)}):\n  " + "\n  ".join(skipped))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_builders.cli",
        description="Check (--dry_run) or build a MER dataset.",
        epilog="--overrides.KEY=VALUE: change a builder config field, e.g. "
        "--overrides.crop_size=64 (repeatable)",
    )
    add_build_arguments(parser)
    parser.add_argument("--dry_run", action="store_true", help="check only, build nothing")
    parser.add_argument("--summary_json", type=Path, help="also write the summary here")
    return parser


def build_as_asked(args: argparse.Namespace, variant: dict[str, Any]) -> AnyBuilder:
    """Builds (or finds already built) the dataset the parsed arguments name, and says
    where it is (`print_built`)."""
    builder = build(args.name, manual_dir=args.manual_dir, workers=args.workers, **variant)
    print_built(builder)
    return builder


def exit_status(command: Callable[[], None]) -> int:
    """Runs a command: 0 when done, 2 with one `error:` line for a problem with the input."""
    try:
        command()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit status (2 for a problem with the input)."""
    return exit_status(lambda: _build_command(argv))


def _build_command(argv: Sequence[str] | None) -> None:
    """Checks a release (its summary, optionally written as JSON) and builds it, or the
    plan of a generated dataset; `--dry_run` builds nothing."""
    args, variant = parse_build_args(_parser(), argv)
    builder = get_builder(args.name, **variant)
    release = summary = None
    if isinstance(builder, ManualDirBuilder):
        release = read_release(args.name, args.manual_dir, **variant)
        summary, text = dry_run_summary(builder, release, args.manual_dir)
        print(text)
    elif args.dry_run or args.summary_json:
        # A generated dataset: its plan, from the generator alone.
        summary = builder.generated_summary()
        print(json.dumps(summary, indent=2))
    if args.summary_json and summary is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    # After the summary, so the rows behind an error are on the screen.
    if isinstance(release, ReleaseRecords | VideoRelease):
        check_usable(release)
    if release is not None and args.strict:
        check_strict(release)
    if not args.dry_run:
        build_as_asked(args, variant)


if __name__ == "__main__":
    sys.exit(main())
