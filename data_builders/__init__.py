"""MER datasets as TFDS builders (array_record, no TensorFlow): build, check and read them.

    data_builders.check(config.data, "clips")   # validate, build nothing
    dataset = data_builders.load(config.data)   # build on first use, read: what runs call

    builder = data_builders.build("synthetic_me", overrides={"num_subjects": 4})
    examples = data_builders.load_examples(builder)   # dict of stacked numpy arrays
    builder = data_builders.build("casme2", data_dir="~/mer_data", manual_dir="~/CASME2")
    release = data_builders.read_release("samm", "~/SAMM")   # records only, no pixels

`BUILDERS` (`data_builders.registry`) names every dataset: clip datasets (synthetic_me
and the licensed casme2, samm, smic, casme3, mmew, megc2019, read from the user's
release folder, `manual_dir`) and macro-expression frame-pair corpora for MA2MI
pre-training (synthetic_macro, casme3_macro, ckplus, video_folder;
`data_builders.macro_pairs`). A build is cached under data_dir (default
`default_data_dir()`) and reused; `overrides` change config fields, each variant in its
own cache folder. `python -m data_builders.cli NAME --manual_dir DIR --dry_run` checks a
release before a long build. Where things are:

- `loading`: `check`, `load`, `build`, `read_release`, `load_examples`, `pair_source`,
  `macro_corpus_bytes`;
- `registry`: `BUILDERS`, `get_builder`, `default_data_dir`;
- `records` (the clips found on disk), `reading` (the rules every release reader
  shares: sheets, frame folders, errata), `summary` (the dry run's counts), `cli`;
- `clip_builder` / `macro_pairs`: the two builder bases; `base`: what they share; the
  per-clip pixels are `mer_jax.preprocess.clip`.
"""

from data_builders.loading import (
    build,
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
    "build",
    "builder_names",
    "check",
    "default_data_dir",
    "get_builder",
    "load",
    "load_examples",
    "macro_corpus_bytes",
    "pair_source",
    "read_release",
]
