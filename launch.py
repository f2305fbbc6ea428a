r"""Trains and evaluates one experiment config under leak-free LOSO, or pre-trains.

  python launch.py --config configs/fr.py --workdir runs/fr
  python launch.py --config configs/fr.py --workdir runs/fr --mode eval
  python launch.py --config configs/fr.py --config.train.steps=2000 --config.seeds='(0,1,2,3,4)'
  python launch.py --config configs/fr.py --config.data.overrides.crop_size=64
  python launch.py --config configs/ma2mi_pretrain.py --workdir runs/ma2mi
  python launch.py --config configs/miacnet.py --config.init_from=runs/ma2mi
  python launch.py --workdir runs/fr --mode predict --input clip.mp4 --onset 12 --offset 57
  python launch.py --workdir runs/spotting --mode predict --input video.mp4 --recognizer runs/fr
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
predictions_new.csv; on a spotting workdir it spots the expressions of a video and
writes their intervals, a timeline and notes (`mer_jax.predict.spotting`). `export`
writes export/, the same ensemble as a portable predictor (`mer_jax.predict`,
`mer_jax.export`). Both read the workdir's config.json.

The data flows one way: `data_builders.load` builds the configured dataset on first
use and reads it; the run of the config's task (`mer_jax.train.RUNS`) receives it.
Nothing is loaded, built or written before the whole config, the data settings and the
workdir are checked, and the workdir is locked for the run. Exit status: 0 done, 2 a
problem with the input (one line says which), 3 training diverged, 130/143 stopped by
SIGINT/SIGTERM (rerun the same command to resume).
"""

import dataclasses
import pathlib
import sys
import time
from typing import Any

import ml_collections
from absl import flags, logging
from ml_collections import config_dict, config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from mer_jax import guards
from mer_jax.errors import UserError

MODES = ("train", "eval", "predict", "export")
_OVERRIDES = "--config.data.overrides."
# The grid is an empty ConfigDict in configs/common.py, so ml_collections has no field to
# override: `--config.tune.grid.SECTION.FIELD=(V1,V2)` is read here.
_GRID = "--config.tune.grid."


def _grid(values: dict[str, Any]) -> dict[str, dict[str, tuple]]:
    """{"train.learning_rate": "(1e-3,3e-3)"} -> {"train": {"learning_rate": (0.001, 0.003)}}.

    Raises:
        UserError: a key that is not SECTION.FIELD.
    """
    from data_builders.cli import override_value  # no JAX: cheap

    grid: dict[str, dict[str, tuple]] = {}
    for key, text in values.items():
        section, dot, field = key.partition(".")
        if not dot or not field:
            raise UserError(f"expected {_GRID}SECTION.FIELD=(V1,V2,...), got {_GRID}{key}")
        items = str(text).strip().strip("()").split(",")
        grid.setdefault(section, {})[field] = tuple(
            override_value(item.strip()) for item in items if item.strip()
        )
    return grid


def with_model_defaults(config: ml_collections.ConfigDict, name: str | None = None) -> None:
    """Gives `config.model` every constructor argument of the model `name` (default: the
    config's `model.name`) that it leaves out, at the constructor's default (None, read
    from the build, for `BUILD_SETTINGS`): `mer_jax.models.config_fields`.

    So every `--config.model.X=V` override names an existing field, on every config, and
    config.json records every setting the model was built with.
    """
    from mer_jax import models  # imports JAX: only once a config is loaded

    model_class = models.MODELS.get(name or config.model.get("name"))
    if model_class is None:
        return  # validation names the unknown model
    with config.unlocked():
        for key, (default, kind) in models.config_fields(model_class).items():
            if key not in config.model:
                config.model[key] = config_dict.placeholder(kind) if default is None else default


class _ConfigFileParser(ConfigFileFlagParser):
    """ml_collections' config file parser, then `with_model_defaults`, before ml_collections
    applies the --config.* overrides."""

    def __init__(self, model_name: str | None) -> None:
        super().__init__("config")
        # A --config.model.name override: the fields are that model's, not the file's.
        self.model_name = model_name

    def parse(self, path: str) -> Any:
        config = super().parse(path)
        if isinstance(config, ml_collections.ConfigDict) and "model" in config:
            with_model_defaults(config, self.model_name)
        return config


def config_file_parser(argv: list[str]) -> ConfigFileFlagParser:
    """The parser of a --config flag for any entry point that takes one: the config file,
    then every model field at its default (`with_model_defaults`), then ml_collections
    applies the --config.* overrides of `argv`."""
    return _ConfigFileParser(_model_name_override(argv))


def _model_name_override(argv: list[str]) -> str | None:
    """The value of `--config.model.name=NAME` (or `--config.model.name NAME`), if given."""
    flag = "--config.model.name"
    for index, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and index + 1 < len(argv):
            return argv[index + 1]
    return None


def _flag_values(argv: list[str] | None = None) -> flags.FlagValues:
    """The command line's flags, on a FlagValues of their own (so `main` can run in-process);
    ml_collections reads the --config.* overrides from `argv`."""
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, "Experiment config file.", flag_values=values, sys_argv=argv
    )
    values["config"].parser = config_file_parser(argv or [])
    flags.DEFINE_string(
        "workdir", None, "Output folder (default runs/<config file name>).", flag_values=values
    )
    flags.DEFINE_enum(
        "mode",
        "train",
        MODES,
        "train (or resume) | eval | predict (--input) | export, the last two from --workdir "
        "alone.",
        flag_values=values,
    )
    for name, help_text in (
        ("input", "predict: a frame folder, a video or a CSV of clips (path,onset,offset[,apex]); "
         "on a spotting workdir a video or frame folder."),
        ("output", "predict: the CSV (W/predictions_new.csv), on a spotting workdir the folder "
         "(W/predictions_new/<video name>); export: the folder (W/export)."),
        ("recognizer", "predict on a spotting workdir: a recognition workdir that classifies "
         "every spotted interval."),
    ):
        flags.DEFINE_string(name, None, help_text, flag_values=values)
    flags.DEFINE_float(
        "fps", None, "predict on a spotting workdir: the video's frame rate (default: its "
        "container's; needed where it has none, and for a frame folder).", flag_values=values,
    )
    for name, default in (("onset", "first"), ("offset", "last"), ("apex", "motion peak")):
        flags.DEFINE_integer(
            name, None, f"predict: {name} frame number (default: {default}).", flag_values=values
        )
    # Several processes (one per host): TPU pod slices and SLURM are found by JAX itself.
    flags.DEFINE_string(
        "coordinator_address", None, "host:port of process 0, e.g. localhost:1234.",
        flag_values=values,
    )
    flags.DEFINE_integer("num_processes", None, "processes in the run.", flag_values=values)
    flags.DEFINE_integer("process_id", None, "this process's index, 0..n-1.", flag_values=values)
    flags.DEFINE_integer(
        "verbosity", logging.ERROR, "absl log level: -1 info, 0 warning, 1 error.",
        flag_values=values,
    )
    return values


def _one_line(error: BaseException) -> str:
    """An exception's message on one line (absl's and ml_collections' may span several).

    ml_collections puts the whole traceback of an error raised by a config's `get_config`
    into its message: only the error's own last line is kept of it.
    """
    text = str(error.args[0] if len(error.args) == 1 else error).strip().strip('"')
    before, traceback, trace = text.partition("Traceback (most recent call last):")
    if traceback:
        before = before.replace("Error whilst parsing config file:", "")
        text = before.strip() + " " + trace.strip().splitlines()[-1]
    return " ".join(text.split())


@dataclasses.dataclass(frozen=True)
class Command:
    """What the command line asks for."""

    config: Any  # None for predict and export, which read the workdir's config.json
    workdir: pathlib.Path | None
    mode: str
    flags: flags.FlagValues

    def value(self, name: str) -> Any:
        return self.flags[name].value


def parse(argv: list[str]) -> Command:
    """The command from the command line.

    `--config.data.overrides.KEY=VALUE` sets a builder config field (any field of the
    dataset's builder config; checked before building); `--config.tune.grid.SECTION.FIELD=
    (V1,V2)` adds a grid axis of nested selection.

    Raises:
        UserError: a bad flag, config file or override, naming it.
    """
    from data_builders.cli import split_overrides  # no JAX: cheap

    rest, overrides = split_overrides(argv, _OVERRIDES)
    rest, grid = split_overrides(rest, _GRID)
    command_line = ["launch.py", *rest]  # absl reads argv[0] as the program
    values = _flag_values(command_line)
    try:
        values(command_line)
        from_workdir = values.mode in ("predict", "export")
        if not values["config"].present and not from_workdir:
            raise UserError("--config is required, e.g. --config configs/fr.py")
        # Touching the (lazily loaded) config loads the file and applies the overrides.
        config = values.config
        if config is not None:
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
    if overrides and config is not None:
        # A new dict: the builder (not the config's field types) checks these fields.
        with config.unlocked():
            config.data.overrides = {**config.data.overrides.to_dict(), **overrides}
    if grid and config is not None:
        merged = config.tune.grid.to_dict()
        for section, axes in _grid(grid).items():
            merged[section] = {**merged.get(section, {}), **axes}
        with config.unlocked():  # validation checks the grid's fields and values
            config.tune.grid = merged
    workdir = values.workdir
    if workdir is not None and not workdir.strip():
        raise UserError("--workdir is empty; give a folder, or leave the flag out.")
    logging.set_verbosity(values.verbosity)
    if workdir is None and config is not None:
        workdir = f"runs/{pathlib.Path(values['config'].config_filename).stem}"
    return Command(config, pathlib.Path(workdir) if workdir else None, values.mode, values)


def run(config: object, workdir: pathlib.Path, mode: str) -> None:
    """Checks everything, then loads the data and trains or evaluates in a locked workdir
    (with several processes, process 0 holds the lock and writes the shared outputs)."""
    # Imported here so that --help and flag errors answer without starting JAX.
    import contextlib

    import data_builders
    from mer_jax import hosts
    from mer_jax.train import RUNS, validation

    tic = time.perf_counter()
    validation.check_config(config)
    run_class = RUNS[config.task]
    data_builders.check(config.data, run_class.DATA_KIND)
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file, not a folder; give a folder.")
    run_class.check_workdir(config, workdir, mode)  # before the lock creates the folder
    with run_class.lock_workdir(workdir) if hosts.is_primary() else contextlib.nullcontext():
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
            command = parse(argv[1:])
            from mer_jax import hosts

            hosts.initialize(
                command.value("coordinator_address"),
                command.value("num_processes"),
                command.value("process_id"),
            )
            if command.mode in ("predict", "export"):
                from mer_jax import predict

                print(
                    predict.use_workdir(
                        command.mode,
                        command.workdir and str(command.workdir),
                        input_path=command.value("input"),
                        onset=command.value("onset"),
                        offset=command.value("offset"),
                        apex=command.value("apex"),
                        output=command.value("output"),
                        fps=command.value("fps"),
                        recognizer=command.value("recognizer"),
                    )
                )
            else:
                run(command.config, command.workdir, command.mode)
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
