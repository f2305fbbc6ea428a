r"""RESULTS.md's recognition table, regenerated from one command (resumable).

  python -m benchmarks.results_table --root runs/results
  python -m benchmarks.results_table --root runs/results --rows ststnet,fr --seeds 0,1,2
  python -m benchmarks.results_table --root runs/results_casme2 --builder_config casme2_shaped

Every row is a LOSO run of a config in configs/ (plus its ablation flags), trained in
its own workdir below `--root` by launch.py's own `run` (validation, locking, resume:
an interrupted table resumes where it stopped; a finished row is only re-read). Rows
whose settings were chosen by comparing results on this protocol are selected by nested
LOSO (`ROW.grid`, `mer_jax.train.tuning`): the chosen point is picked per outer fold from
that fold's training subjects alone, so no row is selected on its own test subjects.
Ablation rows are the same run with one module switched off, read against their base
row with the paired comparison (`mer_jax.evaluate.compare`); an ablation of a nested row
retrains each outer fold with the point its base row chose (`tune.choices_from`), so the
two differ in that module alone and the ablation costs only its outer runs. Base rows
come before their ablations.

Writes the table (95% subject-bootstrap intervals) into RESULTS.md's `results_table`
section (`benchmarks.write_section`), and `results_table.md` / `results_table.json` into
`--root`: every finished row there, also those of earlier calls with other `--rows`.
Each row records, when it finishes training, the machine and the date it was trained on
(`row.json` in its workdir), so a table assembled from separate calls says where each of
its rows came from.
"""

import dataclasses
import datetime
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from absl import flags, logging

from benchmarks import machine, run_app, write_section

_ROOT = flags.DEFINE_string("root", "runs/results", "Folder of the rows' workdirs and the table.")
_ROWS = flags.DEFINE_list("rows", None, "Rows to run (their names); default all.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of every row.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data cache (default: the configs').")
_BUILDER_CONFIG = flags.DEFINE_string(
    "builder_config",
    None,
    "synthetic_me's builder config for every row (e.g. casme2_shaped: 26 subjects, "
    "narrower intervals); default: the configs' default build. Its table is its own "
    "RESULTS.md section; give it its own --root.",
)
_INNER_FOLDS = flags.DEFINE_integer(
    "inner_folds", 3, "Inner folds of nested selection (0: leave one subject out)."
)
_INNER_SEEDS = flags.DEFINE_list("inner_seeds", ["0"], "Seeds of the inner runs.")


Changes = tuple[tuple[str, Any], ...]  # (dotted config name, value)

# Pre-trainings a row can start from (`Row.pretrain`): configs/ma2mi_pretrain.py with
# these changes, trained once into `--root`/pretraining_<name> and shared by its rows.
PRETRAININGS: dict[str, Changes] = {
    "ma2mi": (),
    # The control: branches that saw a single step (near-random, equally slowed).
    "ma2mi_1_step": (
        ("train.steps", 1),
        ("train.warmup_steps", 0),
        ("train.checkpoint_every", 1),
        ("engine.steps_per_dispatch", 1),
    ),
}


def _flags_text(changes: Changes) -> str:
    return " ".join(f"--config.{k}={v!r}" for k, v in changes)


@dataclasses.dataclass(frozen=True)
class Row:
    """One row: a config, its changes, the grid it is selected over (nested), the row it
    ablates (compared with) and the pre-training it starts from (`PRETRAININGS`)."""

    name: str
    config: str
    changes: Changes = ()
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    ablates: str | None = None
    pretrain: str | None = None
    inner_folds: int | None = None  # None: --inner_folds

    @property
    def command(self) -> str:
        text = f"`configs/{self.config}.py`"
        if self.changes:
            text += f" `{_flags_text(self.changes)}`"
        if self.pretrain is not None:
            flags_text = _flags_text(PRETRAININGS[self.pretrain])
            text += " from `configs/ma2mi_pretrain.py`" + (f" `{flags_text}`" if flags_text else "")
        return text


# The settings these rows were tuned over on this protocol (docs/evaluation.md, nested
# selection): chosen per outer fold from its training subjects alone.
_FR_GRID = (("train.learning_rate", (1e-3, 3e-3)),)
_READOUT_GRID = (("model.readout", ("mean", "flatten")),)
_DERE_GRL_GRID = (("model.dropout", (0.0, 0.3)), ("model.hflip", (False, True)))
_MIACNET_GRID = (("train.weight_decay", (0.0, 1.0)), ("model.dropout", (0.3, 0.5)))
# After pre-training, also the learning rate of the pre-trained branches.
_MIACNET_MA2MI_GRID = _MIACNET_GRID + (("train.pretrained_lr_scale", (0.1, 1.0)),)

# Settings a config has since moved from (to its nested choice, docs/evaluation.md,
# "Shipped settings"), at the values the runs that keep them were trained with: a row or
# trial of the earlier setting names it as a change, so it still describes, resumes and
# re-reads the run it trained (a grid's own keys need none: every run under a grid sets
# them). The pooled readouts are also our first reading of the papers (docs/methods.md).
FR_POOLED = (("model.readout", "mean"),)
FR_FIRST_LR = (("train.learning_rate", 3e-3),)  # picked on the first build's outer LOSO
LTR3O_POOLED = (("model.readout", "mean"), ("model.pool_padding", "VALID"))
MIACNET_FIRST = (("train.pretrained_lr_scale", 0.1),)
# Tuned by the rows' grids (so pinned by none of them), moved for the fixed trials alone.
DERE_GRL_FIRST_DROPOUT = (("model.dropout", 0.3),)
MIACNET_FIRST_DECAY = (("train.weight_decay", 1.0),)

# LTR3O's own ablations (its paper's claims), of the shipped LTR3O and of the pooled one.
_LTR3O_ABLATIONS = (
    ("LTR3O without ranking", ("model.weight_rank", 0.0)),
    ("LTR3O without calibration", ("model.weight_cal", 0.0)),
    ("LTR3O, a single candidate", ("model.num_candidates", 1)),
)

ROWS = (
    Row("STSTNet", "ststnet"),
    Row("FR", "fr", grid=_FR_GRID),
    Row("FR, pooled readout", "fr", FR_POOLED, grid=_FR_GRID),
    # The trial that decided FR's readout: at the learning rate of its trials.
    Row("FR, readout chosen by nested LOSO", "fr", FR_FIRST_LR, grid=_READOUT_GRID),
    # The readout is nested: every outer fold of the default build chose flatten.
    Row("LTR3O", "ltr3o", grid=_READOUT_GRID),
    *(Row(name, "ltr3o", (change,), _READOUT_GRID, "LTR3O") for name, change in _LTR3O_ABLATIONS),
    Row("LTR3O, pooled readout", "ltr3o", LTR3O_POOLED),
    *(
        Row(
            f"{name}, pooled readout", "ltr3o", (*LTR3O_POOLED, change), (), "LTR3O, pooled readout"
        )
        for name, change in _LTR3O_ABLATIONS
    ),
    Row("DeRe-GRL", "dere_grl", grid=_DERE_GRL_GRID),
    Row(
        "DeRe-GRL without ADM",
        "dere_grl",
        (("model.use_adm", False),),
        _DERE_GRL_GRID,
        ablates="DeRe-GRL",
    ),
    Row(
        "DeRe-GRL without RRM",
        "dere_grl",
        (("model.use_rrm", False),),
        _DERE_GRL_GRID,
        ablates="DeRe-GRL",
    ),
    Row(
        "DeRe-GRL without the AU loss",
        "dere_grl",
        (("model.weight_au", 0.0),),
        _DERE_GRL_GRID,
        ablates="DeRe-GRL",
    ),
    Row(
        "DeRe-GRL without the reconstruction loss",
        "dere_grl",
        (("model.weight_rec", 0.0),),
        _DERE_GRL_GRID,
        ablates="DeRe-GRL",
    ),
    # From scratch the pre-trained branches' learning rate is unused; kept as trained.
    Row("MIACNet from scratch", "miacnet", MIACNET_FIRST, _MIACNET_GRID),
    Row(
        "MIACNet, pooled head",
        "miacnet",
        MIACNET_FIRST + (("model.head", "pool"),),
        _MIACNET_GRID,
        ablates="MIACNet from scratch",
    ),
    # The two settings of configs/miacnet.py no nested row had chosen (picked on seed 0 of
    # the first build), at the config's nested choices of the others.
    Row(
        "MIACNet, head and flips chosen by nested LOSO",
        "miacnet",
        grid=(("model.head", ("pool", "flatten")), ("model.hflip", (False, True))),
    ),
    # Eight points: 2 inner folds (not 3) keep its cost near the four-point rows' on a CPU.
    Row(
        "MIACNet after MA2MI pre-training",
        "miacnet",
        grid=_MIACNET_MA2MI_GRID,
        pretrain="ma2mi",
        inner_folds=2,
    ),
    Row(
        "MIACNet after a 1-step MA2MI pre-training (control)",
        "miacnet",
        grid=_MIACNET_MA2MI_GRID,
        ablates="MIACNet after MA2MI pre-training",
        pretrain="ma2mi_1_step",
        inner_folds=2,
    ),
)


# In a row's workdir: the machine and date it was trained on.
ROW_JSON = "row.json"
# In a row's workdir: the ceiling and floor of its build (`benchmarks.probes.bounds`).
BOUNDS_JSON = "bounds.json"


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def _config(name: str, changes: Changes) -> Any:
    """configs/<name>.py with `changes` and the table's data cache."""
    import launch

    config = importlib.import_module(f"configs.{name}").get_config()
    launch.with_model_defaults(config)  # as launch.py reads a config file
    with config.unlocked():
        for dotted, value in changes:
            section, field = dotted.split(".")
            config[section][field] = value
        if _DATA_DIR.value:
            config.data.data_dir = _DATA_DIR.value
        if _BUILDER_CONFIG.value:
            config.data.builder_config = _BUILDER_CONFIG.value
    return config


def pretraining_workdir(name: str, root: Path) -> Path:
    return root / f"pretraining_{name}"


def row_config(row: Row, root: Path) -> Any:
    """The row's config: its file, its changes, the table's seeds, its pre-training, its
    nested grid and, for an ablation of a nested row, its base row's choices."""
    config = _config(row.config, row.changes)
    with config.unlocked():
        config.seeds = tuple(int(s) for s in _SEEDS.value)
        if row.pretrain is not None:
            config.init_from = str(pretraining_workdir(row.pretrain, root))
        if row.grid:
            grid: dict[str, dict[str, tuple]] = {}
            for dotted, values in row.grid:
                section, name = dotted.split(".")
                grid.setdefault(section, {})[name] = values
            config.tune.grid = grid
            config.tune.inner_folds = row.inner_folds or _INNER_FOLDS.value
            config.tune.seeds = tuple(int(s) for s in _INNER_SEEDS.value)
            if row.ablates:
                config.tune.choices_from = str(root / slug(row.ablates))
    return config


def run_row(row: Row, root: Path) -> dict[str, Any]:
    """Trains (or resumes, or re-reads) a row; returns its metrics and wall time."""
    import launch
    from mer_jax import guards
    from mer_jax import workdir as layout

    workdir = root / slug(row.name)
    metrics_path = workdir / layout.METRICS_JSON
    provenance_path = workdir / ROW_JSON
    tic = time.perf_counter()
    if metrics_path.exists():
        from mer_jax.train import RUNS

        # A finished row is re-read only as the run its definition describes: one whose
        # config has since moved (a row without its pin) is refused, not re-labelled.
        config = row_config(row, root)
        RUNS[config.task].check_workdir(config, workdir, "eval")
    else:
        if row.pretrain is not None:
            from mer_jax.train import pretraining

            source = pretraining_workdir(row.pretrain, root)
            if not (source / pretraining.METRICS_JSON).exists():
                pretrain_config = _config("ma2mi_pretrain", PRETRAININGS[row.pretrain])
                launch.run(pretrain_config, source, "train")
        launch.run(row_config(row, root), workdir, "train")
        provenance = {"machine": machine(), "date": datetime.date.today().isoformat()}
        guards.atomic_write_text(provenance_path, json.dumps(provenance, indent=2))
    metrics = json.loads(metrics_path.read_text())
    timing_path = workdir / layout.TIMING_JSON
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    # A row trained before rows recorded their machine says so rather than guessing.
    unknown = {"machine": "not recorded", "date": "not recorded"}
    provenance = json.loads(provenance_path.read_text()) if provenance_path.exists() else unknown
    record = json.loads((workdir / layout.DATASET_JSON).read_text())
    provenance["build"] = record["metadata"].get("build", f"{record['name']} (not recorded)")
    return {
        "bounds": row_bounds(row, root, provenance["build"]),
        "row": row.name,
        "workdir": str(workdir),
        "metrics": metrics,
        "train_s": timing.get("train_s"),
        "replicas": timing.get("num_replicas"),
        "wall_s_this_call": round(time.perf_counter() - tic, 1),
        **provenance,
    }


def row_bounds(row: Row, root: Path, build: str) -> dict[str, float]:
    """The AU-oracle ceiling and the probe floor on the row's own input and build
    (`benchmarks.probes.bounds`), computed once and kept in the row's workdir."""
    import data_builders
    from benchmarks import probes
    from mer_jax import guards

    path = root / slug(row.name) / BOUNDS_JSON
    if path.exists() and (found := json.loads(path.read_text())).get("build") == build:
        return found
    config = row_config(row, root)
    dataset = data_builders.load(config.data)
    if dataset.metadata["build"] != build:
        raise RuntimeError(
            f"row {row.name!r} was trained on {build}, but its config now loads "
            f"{dataset.metadata['build']}; rerun the row (delete {path.parent})"
        )
    found = {"build": build} | probes.bounds(dataset, config)
    guards.atomic_write_text(path, json.dumps(found, indent=2))
    return found


def _cell(metrics: dict[str, Any], key: str) -> str:
    low, high = metrics[f"{key}_ci"]
    return f"{metrics[key]:.3f} +- {metrics[f'{key}_std']:.3f} [{low:.2f}, {high:.2f}]"


_DESCRIPTION = (
    "Selection `fixed`: the config's settings; `nested`: chosen per outer fold by nested "
    "LOSO over its training subjects (docs/evaluation.md). An ablation's difference is "
    "paired with its base row (`python -m mer_jax.evaluate.compare`), over the same "
    "samples and seeds. Ceiling: the AU oracle, a nested ridge classifier given each "
    "clip's true AU set; floor: the nested linear probe on the row's own network input "
    "(`benchmarks/probes.py`), both under the same LOSO on the row's build; `between` "
    "places the UF1 from the floor (0) to the ceiling (1), below 0 when the network finds "
    "less than a linear map on its own input. The machine and date are each row's training."
)


def markdown(rows: list[Row], results: dict[str, dict[str, Any]], root: Path) -> str:
    """The table: metrics with intervals, the selection, the paired difference of an
    ablation to its base row, the command and seeds, the training time with its replica
    count (summed over the processes that trained the row), the machine and the date."""
    from mer_jax.evaluate import compare

    lines = [
        "| method | UF1 | ceiling UF1 | floor UF1 | between | UAR | accuracy | selection | "
        "vs its base row: UF1 difference | command | seeds | build | training | machine | "
        "date |",
        "|---" * 15 + "|",
    ]
    for row in rows:
        if row.name not in results:
            continue
        metrics = results[row.name]["metrics"]
        selection = "fixed"
        if metrics.get("selection") == "nested" and "choices_from" in metrics["tuning"]:
            selection = f"nested: the choices of {row.ablates}"
        elif metrics.get("selection") == "nested":
            grid = ", ".join(f"{k} {list(v)}" for k, v in row.grid)
            selection = f"nested over {grid} ({metrics['tuning']['inner_folds']} inner folds)"
            selection += f"; chosen: {chosen_counts(row, root)}"
        versus = ""
        if row.ablates and row.ablates in results:
            paired = compare.compare(root / slug(row.name), root / slug(row.ablates))["uf1"]
            low, high = paired["interval"]
            versus = f"{paired['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"
        result = results[row.name]
        train_s, replicas = result["train_s"], result["replicas"]
        training = "" if train_s is None else f"{train_s:,.0f} s ({replicas} replicas)"
        seeds = ", ".join(str(s) for s in metrics.get("seeds", []))
        ceiling, floor = result["bounds"]["ceiling"], result["bounds"]["floor"]
        between = (metrics["uf1"] - floor) / (ceiling - floor)
        lines.append(
            f"| {row.name} | {_cell(metrics, 'uf1')} | {ceiling:.3f} | {floor:.3f} | "
            f"{between:+.2f} | {_cell(metrics, 'uar')} | "
            f"{metrics['accuracy']:.3f} +- {metrics['accuracy_std']:.3f} | {selection} | "
            f"{versus} | {row.command} | {seeds} | `{result['build']}` | {training} | "
            f"{result['machine']} | "
            f"{result['date']} |"
        )
    done = [(row.name, results[row.name]["metrics"]) for row in rows if row.name in results]
    lines += ["", *per_class_lines(done)]
    pending = [row for row in rows if row.name not in results]
    if pending:
        lines.append("")
        lines.append(
            "Not yet regenerated here (each: `python -m benchmarks.results_table --rows "
            "NAME`): " + "; ".join(f"{row.name} (`{slug(row.name)}`)" for row in pending) + "."
        )
    return "\n".join(lines) + "\n"


def chosen_counts(row: Row, root: Path) -> str:
    """How many outer folds of a finished nested row chose each value of each tuned
    setting ("model.dropout 0.0 x11, 0.3 x5"): a config ships the value most folds chose
    (docs/evaluation.md, "Shipped settings")."""
    from mer_jax import workdir as layout
    from mer_jax.train import tuning

    config = row_config(row, root)
    points = layout.grid_points(config)
    chosen = [points[i] for i in tuning.read_choices(root / slug(row.name), config).values()]
    parts = []
    for name, values in layout.grid_values(config).items():
        counts = [(value, sum(point[name] == value for point in chosen)) for value in values]
        parts.append(f"{name} " + ", ".join(f"{v!r} x{n}" for v, n in counts if n))
    return "; ".join(parts) + f" (of {len(chosen)} folds)"


def per_class_lines(runs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The per-class F1 of each (name, metrics.json) run from its confusion matrix summed
    over its seeds: where a run gains or loses against another (a macro average hides
    it), with the clips of each class and how often the run predicted it."""
    from mer_jax.evaluate.metrics import confusion_metrics

    if not runs:
        return []
    classes = runs[0][1]["class_names"]
    lines = [
        "Per-class F1 pooled over the seeds, with (N/P): N the class's clips summed over "
        "the seeds, P how often the run predicted the class:",
        "",
        "| run | " + " | ".join(classes) + " |",
        "|---" * (len(classes) + 1) + "|",
    ]
    for name, metrics in runs:
        cells = [
            f"{c['f1']:.2f} ({c['support']}/{c['n_predicted']})"
            if c["f1"] is not None
            else f"absent (0/{c['n_predicted']})"
            for c in confusion_metrics(metrics["confusion_matrix"])["per_class"]
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.ERROR)
    root = Path(_ROOT.value)
    root.mkdir(parents=True, exist_ok=True)
    names = {row.name for row in ROWS}
    chosen = [r for r in ROWS if _ROWS.value is None or slug(r.name) in map(slug, _ROWS.value)]
    unknown = set(map(slug, _ROWS.value or [])) - {slug(n) for n in names}
    if unknown:
        sys.exit(f"error: unknown rows {sorted(unknown)}; rows: {[slug(n) for n in names]}")
    from mer_jax.errors import UserError

    results = {}
    for row in chosen:
        print(f"== {row.name}", flush=True)
        try:
            results[row.name] = run_row(row, root)
        except UserError as error:
            sys.exit(f"error: row {row.name!r}: {error}")
    # The table holds every finished row under --root, so rows run by separate calls
    # (--rows) add up to one table.
    for row in ROWS:
        if row.name not in results and (root / slug(row.name) / "metrics.json").exists():
            results[row.name] = run_row(row, root)
    table = markdown(list(ROWS), results, root)
    (root / "results_table.md").write_text(table)
    (root / "results_table.json").write_text(json.dumps(results, indent=2) + "\n")
    seeds = "" if _SEEDS.value == _SEEDS.default else f" --seeds {','.join(_SEEDS.value)}"
    shaped = _BUILDER_CONFIG.value
    write_section(
        f"results_table_{shaped}" if shaped else "results_table",
        "Recognition on the synthetic database (CASME II 5-class, LOSO)"
        + (f", the `{shaped}` build" if shaped else ""),
        f"UF1 and UAR: mean +- std over the seeds [95% subject-bootstrap interval]. "
        f"{_DESCRIPTION}\n\n{table}",
        f"python -m benchmarks.results_table{seeds}"
        + (f" --builder_config {shaped}" if shaped else ""),
    )
    print(table)


if __name__ == "__main__":
    run_app(main)
