r"""Trains and evaluates one experiment config under leak-free LOSO, or pre-trains.

  python launch.py --config configs/fr.py --workdir runs/fr
  python launch.py --config configs/fr.py --workdir runs/fr --mode eval
  python launch.py --config configs/fr.py --config.train.steps=2000 --config.seeds='(0,1,2,3,4)'
  python launch.py --config configs/ma2mi_pretrain.py --workdir runs/ma2mi
  python launch.py --config configs/miacnet.py --config.init_from=runs/ma2mi
  python launch.py --workdir runs/fr --mode predict --input clip.mp4 --onset 12 --offset 57
  python launch.py --workdir runs/fr --mode export

`train` trains every fold and seed (resuming from the workdir's checkpoints if
a run was interrupted) and writes config.json, metrics.json, predictions.csv,
confusion_matrix.png, curves.png, timing.json, checkpoints/ and tensorboard/.
`eval` restores the checkpoints and recomputes every evaluation output.
A config with `task = "pretrain"` runs MA2MI pre-training instead
(`mer_jax.train.pretraining`: reconstructions.png, pretrain_metrics.json, the
exported branches).
`predict` averages the trained (fold, seed) models of a LOSO workdir on new clips (a
frame folder, a video or a CSV of clips), preprocessed as the build was, and writes
predictions_new.csv; `export` writes export/, the same ensemble as a portable
predictor (`mer_jax.predict`, `mer_jax.export`). Both read the workdir's config.json.

The data flows one way: `data_builders.load` builds the configured dataset on first
use and reads it; the run of the config's task (`mer_jax.train.RUNS`) receives it.
"""

import pathlib
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags

from mer_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default runs/<config file name>).")
_MODE = flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "predict", "export"],
    "train (or resume) | eval | predict (--input) | export, the last two from --workdir alone.",
)
_INPUT = flags.DEFINE_string(
    "input", None, "predict: a frame folder, a video or a CSV of clips (path,onset,offset[,apex])."
)
_ONSET = flags.DEFINE_integer("onset", None, "predict: onset frame number (default: first).")
_OFFSET = flags.DEFINE_integer("offset", None, "predict: offset frame number (default: last).")
_APEX = flags.DEFINE_integer("apex", None, "predict: apex frame number (default: middle).")
_OUTPUT = flags.DEFINE_string(
    "output", None, "predict: the CSV (W/predictions_new.csv); export: the folder (W/export)."
)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad config file or key reported as one clear line."""
    try:
        remaining = app.parse_flags_with_usage(argv)
        # Touching the (lazily loaded) config loads the file and applies the overrides.
        if _CONFIG.value is not None:
            _CONFIG.value.to_json_best_effort()
    except (AttributeError, KeyError, OSError, TypeError, ValueError) as error:
        print(
            f"error: bad --config or --config.* override ({type(error).__name__}: {error}). "
            "Overrides must name existing fields: see the config file and configs/common.py.",
            file=sys.stderr,
        )
        sys.exit(2)
    return remaining


def main(argv: list[str]) -> None:
    del argv
    # Orbax and TFDS log every step at INFO; the progress bars say what matters.
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    if _MODE.value in ("predict", "export"):
        from mer_jax import predict

        try:
            print(
                predict.use_workdir(
                    _MODE.value,
                    _WORKDIR.value,
                    input_path=_INPUT.value,
                    onset=_ONSET.value,
                    offset=_OFFSET.value,
                    apex=_APEX.value,
                    output=_OUTPUT.value,
                )
            )
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        return
    # Imported here so that --help and flag errors answer without starting JAX.
    import data_builders
    from mer_jax.train import RUNS

    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config configs/fr.py")
    config_path = flags.FLAGS["config"].config_filename
    workdir = pathlib.Path(_WORKDIR.value or f"runs/{pathlib.Path(config_path).stem}")
    tic = time.perf_counter()
    try:
        if config.task not in RUNS:
            raise UserError(f"Unknown task {config.task!r}; use one of {sorted(RUNS)}.")
        run = RUNS[config.task](config, workdir, data_builders.load(config.data))
        metrics = run.train() if _MODE.value == "train" else run.evaluate()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(run.summarize(metrics))
    print(f"{_MODE.value} finished in {time.perf_counter() - tic:.0f} s; outputs in {workdir}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
