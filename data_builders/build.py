"""Check or build a MER dataset from the command line.

    python -m data_builders.build casme2 --manual_dir ~/CASME2 --dry_run
    python -m data_builders.build casme2 --manual_dir ~/CASME2 --summary_json casme2.json
    python -m data_builders.build smic --config cropped --manual_dir ~/SMIC \\
        --data_dir ~/mer_data --override crop_size=64

`--dry_run` reads the annotation and lists the frame folders (no image is opened) and
prints the number of samples and subjects, the counts per raw emotion and per protocol
label, and every row skipped or fixed with its reason; `--summary_json PATH` also
writes them as JSON. For the macro-expression pair corpora read from a folder
(casme3_macro, ckplus, video_folder) it prints the clips, subjects, frame rates with
their k, the pairs a build would cut and the clips too short for one. Without
`--dry_run` the same summary is printed and the dataset is built into `--data_dir`
(the cache the training configs read; a complete build there is reused).
"""

import argparse
import json
import os
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import data_builders
from data_builders import macro_pairs
from data_builders.clip_builder import ReleaseBuilder
from data_builders.macro_pairs import MacroReleaseBuilder
from data_builders.summary import format_summary, release_summary
from mer_jax.errors import UserError


def default_data_dir() -> str:
    """$MER_JAX_DATA_DIR, else ~/.cache/mer_jax/datasets (the configs' default too)."""
    return os.environ.get(
        "MER_JAX_DATA_DIR", os.path.join(os.path.expanduser("~"), ".cache", "mer_jax", "datasets")
    )


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_builders.build",
        description="Check (--dry_run) or build a MER dataset.",
    )
    parser.add_argument(
        "name",
        help=f"dataset: {', '.join(data_builders.BUILDERS)}; macro-expression pair corpora: "
        f"{', '.join(data_builders.MACRO_BUILDERS)}",
    )
    parser.add_argument("--manual_dir", help="the licensed release folder")
    parser.add_argument("--data_dir", default=default_data_dir(), help="built datasets cache")
    parser.add_argument("--config", help="builder config, e.g. raw or cropped")
    parser.add_argument(
        "--override",
        type=_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a config field, e.g. crop_size=64 (repeatable)",
    )
    parser.add_argument("--workers", type=int, help="processes (default: all cores)")
    parser.add_argument("--dry_run", action="store_true", help="check only, build nothing")
    parser.add_argument("--summary_json", type=Path, help="also write the summary here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit status (2 for a problem with the input)."""
    args = _parser().parse_args(argv)
    overrides = dict(args.override)
    try:
        builder = data_builders.get_builder(
            args.name, data_dir=args.data_dir, config=args.config, overrides=overrides
        )
        if isinstance(builder, MacroReleaseBuilder):
            macro_release = data_builders.read_macro_release(
                args.name,
                args.manual_dir,
                data_dir=args.data_dir,
                config=args.config,
                overrides=overrides,
            )
            summary = macro_pairs.release_summary(
                macro_release,
                name=args.name,
                config=builder.builder_config.name,
                manual_dir=args.manual_dir,
                options=builder.builder_config.pair_options(),
            )
            print(macro_pairs.format_summary(summary))
            if args.summary_json:
                args.summary_json.parent.mkdir(parents=True, exist_ok=True)
                args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        elif isinstance(builder, ReleaseBuilder):
            release = data_builders.read_release(
                args.name,
                args.manual_dir,
                data_dir=args.data_dir,
                config=args.config,
                overrides=overrides,
            )
            summary = release_summary(
                release,
                name=args.name,
                config=builder.builder_config.name,
                manual_dir=args.manual_dir,
                default_protocol=builder.PROTOCOL,
            )
            print(format_summary(summary))
            if args.summary_json:
                args.summary_json.parent.mkdir(parents=True, exist_ok=True)
                args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        elif args.dry_run or args.summary_json:
            raise UserError(f"dataset {args.name} is generated: --dry_run has nothing to check")
        if args.dry_run:
            return 0
        builder = data_builders.build(
            args.name,
            data_dir=args.data_dir,
            manual_dir=args.manual_dir,
            config=args.config,
            overrides=overrides,
            workers=args.workers,
        )
        size = builder.info.splits["train"].num_examples
        variant = f"{builder.name}/{builder.builder_config.name}"
        print(f"built {variant}: {size} examples in {builder.data_dir}")
        return 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


class _CallableModule(types.ModuleType):
    """Keeps `data_builders.build(...)` the build function once this module is imported.

    Importing `data_builders.build` (this module) makes it an attribute of the package,
    where it would hide the function `data_builders.build`; calling the module calls
    the function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _build_dataset(*args, **kwargs)


_build_dataset = data_builders.build
sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
