r"""Trains and evaluates one experiment config under leak-free LOSO, or pre-trains.

  python launch.py --config configs/fr.py --workdir runs/fr
  python launch.py --config configs/fr.py --workdir runs/fr --mode eval
  python launch.py --config configs/fr.py --config.train.steps=2000 --config.seeds='(0,1,2,3,4)'
  python launch.py --config configs/fr.py --config.data.overrides.crop_size=64
  python launch.py --config configs/ma2mi_pretrain.py --workdir runs/ma2mi
  python launch.py --config configs/miacnet.py --config.init_from=runs/ma2mi

`train` trains every fold and seed (resuming from the workdir's checkpoints if
a run was interrupted) and writes config.json, metrics.json, predictions.csv,
confusion_matrix.png, curves.png, timing.json, checkpoints/ and tensorboard/.
`eval` restores the checkpoints and recomputes every evaluation output.
A config with `task = "pretrain"` runs MA2MI pre-training instead
(`mer_jax.train.pretraining`: reconstructions.png, pretrain_metrics.json, the
exported branches).

The data flows one way: `data_builders.load` builds the configured dataset on first
use and reads it; the run of the config's task (`mer_jax.train.RUNS`) receives it.
Nothing is loaded, built or written before the whole config, the data settings and the
workdir are checked, and the workdir is locked for the run. Exit status: 0 done, 2 a
problem with the input (one line says which), 3 training diverged, 130/143 stopped by
SIGINT/SIGTERM (rerun the same command to resume).
"""

import pathlib
import sys
import time

from absl import flags, logging
from ml_collections import config_flags

from mer_jax import guards
from mer_jax.errors import UserError

MODES = ("train", "eval")
_OVERRIDES = "--config.data.overrides."


def _flag_values(argv: list[str] | None = None) -> flags.FlagValues:
    """The command line's flags, on a FlagValues of their own (so `main` can run in-process);
    ml_collections reads the --config.* overrides from `argv`."""
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "Experiment config file.", flag_values=values, sys_argv=argv
    )
    flags.DEFINE_string(
        "workdir", None, "Output folder (default runs/<config file name>).", flag_values=values
    )
    flags.DEFINE_enum("mode", "train", MODES, "train (or resume) | eval.", flag_values=values)
    flags.DEFINE_integer(
        "verbosity", logging.ERROR, "absl log level: -1 info, 0 warning, 1 error.",
        flag_values=values,
    )
    return values


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (absl's and ml_collections' may span several)."""
    text = str(error.args[0] if len(error.args) == 1 else error).strip().strip('"')
    return " ".join(text.split())


def parse(argv: list[str]) -> tuple[object, pathlib.Path, str]:
    """(config, workdir, mode) from the command line.

    `--config.data.overrides.KEY=VALUE` sets a builder config field (any field of the
    dataset's builder config; checked before building).

    Raises:
        UserError: a bad flag, config file or override, naming it.
    """
    from data_builders.cli import override_value  # no JAX: cheap

    rest, overrides = [], {}
    args = iter(argv)
    for arg in args:
        if not arg.startswith(_OVERRIDES):
            rest.append(arg)
            continue
        key, sep, value = arg[len(_OVERRIDES) :].partition("=")
        if not sep:
            value = next(args, None)
        if not key or value is None or value.startswith("--"):
            raise UserError(f"expected {_OVERRIDES}KEY=VALUE, got {arg!r}")
        overrides[key] = override_value(value)
    command_line = ["launch.py", *rest]  # absl reads argv[0] as the program
    values = _flag_values(command_line)
    try:
        values(command_line)
        if values["config"].value is None and not values["config"].present:
            raise UserError("--config is required, e.g. --config configs/fr.py")
        # Touching the (lazily loaded) config loads the file and applies the overrides.
        config = values.config
        config.to_json_best_effort()
    except flags.Error as error:
        raise UserError(f"bad command line: {_one_line(error)} (see --help).") from None
    except SyntaxError as error:
        raise UserError(
            f"the config file {error.filename} has a syntax error at line {error.lineno}: "
            f"{error.msg}."
        ) from None
    except (AttributeError, KeyError) as error:
        # ml_collections applies --config.* overrides while parsing.
        raise UserError(
            f"bad --config.* override: no config field {_one_line(error)}; overrides must name "
            "existing fields (see the config file and configs/common.py)."
        ) from None
    except (OSError, TypeError, ValueError, ImportError) as error:
        raise UserError(
            f"bad --config or --config.* override ({type(error).__name__}: {_one_line(error)}); "
            "see the config file and configs/common.py."
        ) from None
    if overrides:
        # A new dict: the builder (not the config's field types) checks these fields.
        with config.unlocked():
            config.data.overrides = {**config.data.overrides.to_dict(), **overrides}
    workdir = values.workdir
    if workdir is not None and not workdir.strip():
        raise UserError("--workdir is empty; give a folder, or leave the flag out.")
    stem = pathlib.Path(values["config"].config_filename).stem
    logging.set_verbosity(values.verbosity)
    return config, pathlib.Path(workdir or f"runs/{stem}"), values.mode


def run(config: object, workdir: pathlib.Path, mode: str) -> None:
    """Checks everything, then loads the data and trains or evaluates in a locked workdir."""
    # Imported here so that --help and flag errors answer without starting JAX.
    import data_builders
    from mer_jax.train import RUNS, validation

    tic = time.perf_counter()
    validation.check_config(config)
    data_builders.check(config.data, "pairs" if config.task == "pretrain" else "clips")
    run_class = RUNS[config.task]
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file, not a folder; give a folder.")
    run_class.check_workdir(config, workdir, mode)  # before the lock creates the folder
    with run_class.lock_workdir(workdir):
        run_class.check_workdir(config, workdir, mode)  # again, now that no run can change it
        task_run = run_class(config, workdir, data_builders.load(config.data))
        metrics = task_run.train() if mode == "train" else task_run.evaluate()
    print(task_run.summarize(metrics))
    print(f"{mode} finished in {time.perf_counter() - tic:.0f} s; outputs in {workdir}")


def main(argv: list[str]) -> int:
    """The command line: returns the exit status (see the module docstring)."""
    if any(arg in ("-h", "--help", "--helpfull") for arg in argv[1:]):
        print(__doc__ + "\n" + _flag_values().get_help())
        return 0
    try:
        with guards.STOP.installed():
            config, workdir, mode = parse(argv[1:])
            run(config, workdir, mode)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except guards.Interrupted as stopped:
        print(f"\n{stopped}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:
        print("\nstopped by SIGINT; rerun the same command to resume.", file=sys.stderr)
        return 130
    except OSError as error:
        message = guards.os_error_message(error)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
