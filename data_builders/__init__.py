"""MER datasets as TFDS builders (array_record, no TensorFlow): build, check and read them.

    data_builders.check(config.data, "clips")   # validate, build nothing
    dataset = data_builders.load(config.data)   # build on first use, read: what runs call

    builder = data_builders.build("synthetic_me", overrides={"num_subjects": 4})
    examples = data_builders.load_examples(builder)   # dict of stacked numpy arrays
    builder = data_builders.build("casme2", data_dir="~/mer_data", manual_dir="~/CASME2")
    release = data_builders.read_release("samm", "~/SAMM")   # records only, no pixels
    reading = data_builders.ReadOptions(strict=True, errata=data_builders.read_errata("e.csv"))
    builder = data_builders.build("samm", manual_dir="~/SAMM", reading=reading)

`BUILDERS` (`data_builders.registry`) names every dataset: clip datasets (synthetic_me
and the licensed casme2, samm, smic, casme3, mmew, megc2019, read from the user's
release folder, `manual_dir`), macro-expression frame-pair corpora for MA2MI
pre-training (synthetic_macro, casme3_macro, ckplus, video_folder;
`data_builders.macro_pairs`) and long videos for spotting (synthetic_lv, and the
licensed casme_sq, samm_lv, casme3_lv; `data_builders.long_video_builder`). A build is
cached under data_dir (default `default_data_dir()`) and reused; `overrides` change
config fields, each variant in its own cache folder. `python -m data_builders.cli NAME
--manual_dir DIR --dry_run` checks a release before a long build. A release's rows and
clips that cannot be used are skipped and reported, never a reason to stop, unless
`ReadOptions.strict` (`--strict`, `data.strict`); a user's errata CSV (`read_errata`)
corrects a release. Where things are:

- `loading`: `check`, `load`, `build`, `build_configured`, `read_release`, `load_examples`,
  `pair_source`, `macro_corpus_bytes`;
- `registry`: `BUILDERS`, `get_builder`, `default_data_dir`;
- `records` (the clips found on disk and the notes on a release), `sheets` (annotation
  sheets found by their content, read by header name), `reading` (the rules every
  release reader shares: row problems, frame folders, errata), `errata` (the shipped
  tables and a user's CSV), `summary` (the dry run's counts), `cli`;
- `clip_builder` / `macro_pairs` / `long_video_builder`: the builder bases; `base`: what they share
  (`ReadOptions`, the failure policy); the per-clip pixels are `mer_jax.preprocess.clip`.
"""

from data_builders.base import ReadOptions
from data_builders.errata import read_errata
from data_builders.loading import (
    build,
    build_configured,
    check,
    load,
    load_examples,
    macro_corpus_bytes,
    pair_source,
    read_release,
)
from data_builders.registry import BUILDERS, builder_names, default_data_dir, get_builder

__all__ = [
    "BUILDERS",
    "ReadOptions",
    "build",
    "build_configured",
    "builder_names",
    "check",
    "default_data_dir",
    "get_builder",
    "load",
    "load_examples",
    "macro_corpus_bytes",
    "pair_source",
    "read_errata",
    "read_release",
]
