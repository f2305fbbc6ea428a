r"""The device benchmark: one command that measures the accelerator path wherever it runs.

  python -m benchmarks.device_suite --out runs/device_suite                 # one GPU or TPU
  python -m benchmarks.device_suite --setting=cpu --out runs/device_suite_cpu
  python -m benchmarks.device_suite --setting=smoke --out /tmp/suite        # the test's

On the backend jax finds (GPU, TPU or CPU), in this order:
1. each method (STSTNet, FR, LTR3O at full size, DeRe-GRL, MIACNet) under LOSO on the
   default synthetic database, every fold x the setting's seeds, stacked (all replicas at
   once) in float32; then STSTNet with its learning rate selected by nested LOSO (two
   values, 3 inner folds, inner seed 0: the inner and outer replicas all stacked);
2. FR (the smoke setting: STSTNet) end to end on the MEGC 2019-shaped synthetic set
   (synthetic_me's `megc2019_shaped` config: 442 clips, 68 subjects, 3 classes) x 5
   seeds, in the layout `engine.mode=auto` picks on this backend, compile time included;
3. each method sequentially (one replica after another) on its first few replicas, the
   wall time extrapolated to all of them (marked so in the table);
4. each method stacked in bfloat16;
5. MA2MI pre-training on the synthetic macro corpus (frames/s).
A LOSO row gives the wall time of the run (dataset loading excluded; compiling, training,
predicting and the reports included), the compile time, training samples/s (compile
excluded), XLA's memory estimate of the compiled step per device, and UF1 (of a few
steps: a check that training ran, not a result). The device's peak memory over the
whole suite (where the backend reports it) closes the table. `results.json` and
`results.md` (the table) go to `--out`.

The "full" setting (default) is meant to end in about 10 minutes on one H100, and
`--budget_s` (default: the setting's) bounds every setting: once it is spent, the
measurements not started yet are listed as skipped. Datasets are built on first use
into `--data_dir` (default: the usual cache); a first build counts against the budget.
A measurement that fails is listed with its error and the others still run.
"""

import argparse
import dataclasses
import datetime
import importlib
import json
import math
import pathlib
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import jax
import ml_collections

from benchmarks import command_line, measure_loso, write_section

# Each method's config (LTR3O at its accelerator size), unless a setting says otherwise.
METHOD_CONFIGS = {
    "STSTNet": "ststnet",
    "FR": "fr",
    "LTR3O": "ltr3o_full",
    "DeRe-GRL": "dere_grl",
    "MIACNet": "miacnet",
}
COMPOSITE_CONFIG = "megc2019_shaped"  # synthetic_me's builder config


@dataclasses.dataclass(frozen=True)
class Setting:
    """How much the suite trains.

    Attributes:
        name: the `--setting` value.
        methods: the methods measured (keys of METHOD_CONFIGS).
        configs: config files (in configs/) of methods measured with another than
            METHOD_CONFIGS's.
        seeds: seeds of the per-method runs (each seed trains every fold).
        steps, steps_per_dispatch: steps of each per-method run, and of one dispatch.
        sequential_replicas: replicas a sequential run trains before extrapolating.
        composite_method: the method trained end to end on the MEGC 2019-shaped set.
        nested_method: the method trained with nested selection over `nested_grid`
            (`config.tune.grid`), with `nested_inner_folds` inner folds and inner seed 0.
        composite_seeds: its seeds there.
        composite_steps: its steps there (0: its config's).
        pretrain_steps: MA2MI pre-training steps.
        pretrain_changes: dotted keys of configs/ma2mi_pretrain.py to change (smaller
            branches for the smoke test).
        budget_s: the default time budget of the whole suite.
        batch_size: the batch of every LOSO run (0: each config's own); the tiny builds
            of the smoke setting hold fewer training samples a fold than the configs'.
        data_overrides, composite_overrides, macro_overrides: builder overrides of the
            default synthetic database, the MEGC 2019-shaped set and the macro corpus.
    """

    name: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    steps_per_dispatch: int
    sequential_replicas: int
    composite_method: str
    composite_seeds: tuple[int, ...]
    composite_steps: int
    pretrain_steps: int
    budget_s: float
    batch_size: int = 0
    pretrain_changes: dict[str, Any] = dataclasses.field(default_factory=dict)
    configs: dict[str, str] = dataclasses.field(default_factory=dict)
    data_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    composite_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    macro_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    nested_method: str = "STSTNet"
    nested_grid: dict[str, dict[str, tuple]] = dataclasses.field(
        default_factory=lambda: {"train": {"learning_rate": (1e-3, 3e-3)}}
    )
    nested_inner_folds: int = 3


# One GPU or TPU: the synthetic protocol of configs/ (16 folds x 3 seeds), 200 steps a method.
FULL = Setting(
    name="full",
    methods=tuple(METHOD_CONFIGS),
    seeds=(0, 1, 2),
    steps=200,
    steps_per_dispatch=100,
    sequential_replicas=3,
    composite_method="FR",
    composite_seeds=(0, 1, 2, 3, 4),
    composite_steps=0,
    pretrain_steps=200,
    budget_s=600,
)
SETTINGS = {
    "full": FULL,
    # A 2-core CPU: one seed, 10 steps a run, one sequential replica, LTR3O at its CPU size
    # (at full size it is many times slower on a CPU).
    "cpu": dataclasses.replace(
        FULL,
        name="cpu",
        configs={"LTR3O": "ltr3o"},
        seeds=(0,),
        steps=10,
        steps_per_dispatch=10,
        sequential_replicas=1,
        composite_seeds=(0,),
        composite_steps=10,
        pretrain_steps=20,
        budget_s=3000,
    ),
    # The test's: every kind of measurement once, on tiny builds, in seconds; STSTNet on
    # the MEGC 2019-shaped set, as it compiles in a fraction of FR's time.
    "smoke": dataclasses.replace(
        FULL,
        name="smoke",
        methods=("STSTNet",),
        seeds=(0,),
        steps=2,
        steps_per_dispatch=2,
        sequential_replicas=1,
        composite_method="STSTNet",
        composite_seeds=(0,),
        composite_steps=2,
        pretrain_steps=2,
        batch_size=2,
        pretrain_changes={
            "model.input_size": 14,
            "model.grid": 7,
            "model.action_features": (8,),
            "model.embed_features": 8,
            "model.vit_depth": 1,
            "model.vit_heads": 2,
            "model.recon_size": 14,
            "model.decoder_features": (8,),
            "train.batch_size": 16,
            # One device: XLA:CPU compiles the 8-way data-parallel step several times slower.
            "engine.devices": 1,
        },
        # The tests' tiny build (tests/fixtures.py), so the smoke test reuses it.
        data_overrides={
            "num_subjects": 4,
            "clips_per_subject": 4,
            "crop_size": 64,
            "flow_method": "dis",
        },
        composite_overrides={
            "num_subjects": 3,
            "num_clips": 6,
            "crop_size": 64,
            "flow_method": "dis",
        },
        macro_overrides={
            "num_subjects": 2,
            "clips_per_subject": 1,
            "crop_size": 64,
            "pairs_per_clip": 8,
        },
    ),
}


def experiment_config(
    name: str, data_dir: str | None, overrides: dict[str, Any]
) -> ml_collections.ConfigDict:
    """configs/<name>.py reading the data from `data_dir` with builder `overrides`."""
    config = importlib.import_module(f"configs.{name}").get_config()
    config.data.data_dir = data_dir
    config.data.overrides = dict(overrides)
    return config


def schedule(
    config: ml_collections.ConfigDict, steps: int, per_dispatch: int, batch_size: int = 0
) -> None:
    """Sets a run's length: `steps` in dispatches of `per_dispatch` (or of a divisor of it),
    one checkpoint at the end, the warmup within the first half; and its batch, unless
    `batch_size` is 0."""
    per_dispatch = math.gcd(per_dispatch, steps)
    if batch_size:
        config.train.batch_size = batch_size
    config.train.steps = steps
    config.train.warmup_steps = min(config.train.warmup_steps, steps // 2)
    config.engine.steps_per_dispatch = per_dispatch
    config.train.checkpoint_every = steps


class Suite:
    """Runs the measurements in order within the time budget and collects their rows."""

    def __init__(
        self,
        setting: Setting,
        data_dir: str | None,
        budget_s: float,
        written: Callable[[list[dict[str, Any]]], None],
    ):
        self.setting = setting
        self.written = written
        self.data_dir = data_dir
        self.budget_s = budget_s
        self.start = time.perf_counter()
        self.rows: list[dict[str, Any]] = []
        self._datasets: dict[str, Any] = {}

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def measure(self, label: dict[str, Any], run: Callable[[], dict[str, Any]]) -> None:
        """Appends `label` with `run()`'s figures, or why there are none (budget, error)."""
        row = dict(label)
        if self.elapsed() > self.budget_s:
            row["skipped"] = f"the {self.budget_s:.0f} s budget was spent"
        else:
            print(f"[{self.elapsed():6.0f} s] {label['measurement']}: {label['method']}")
            try:
                row |= run()
            except Exception as error:  # one failed measurement must not lose the others
                traceback.print_exc()
                row["error"] = f"{type(error).__name__}: {error}"
        self.rows.append(row)
        # After every row: a run stopped from outside (a lease running out) keeps them.
        self.written(self.rows)

    def dataset(self, config: ml_collections.ConfigDict) -> Any:
        """The loaded dataset of a config (built on first use), loaded once per suite."""
        import data_builders

        key = config.data.to_json_best_effort(sort_keys=True)
        if key not in self._datasets:
            self._datasets[key] = data_builders.load(config.data)
        return self._datasets[key]

    # -- the measurements ----------------------------------------------------------

    def method_config(self, method: str, dtype: str = "float32") -> ml_collections.ConfigDict:
        setting = self.setting
        config = experiment_config(self.config_name(method), self.data_dir, setting.data_overrides)
        config.seeds = setting.seeds
        schedule(config, setting.steps, setting.steps_per_dispatch, setting.batch_size)
        config.engine.compute_dtype = dtype
        return config

    def config_name(self, method: str) -> str:
        return self.setting.configs.get(method, METHOD_CONFIGS[method])

    def named(self, method: str) -> dict[str, str]:
        """A row's method and config file."""
        return {"method": method, "config": self.config_name(method)}

    def loso(self, config: ml_collections.ConfigDict, mode: str, limit: int = 0) -> dict:
        return measure_loso(config, mode, self.dataset(config), max_replicas=limit)

    def sequential(self, method: str) -> dict:
        """A few replicas one after another; the wall time extrapolated to all replicas."""
        config = self.method_config(method)
        return extrapolated(self.loso(config, "sequential", self.setting.sequential_replicas))

    def nested(self, method: str) -> dict:
        """Nested selection, every inner and outer replica stacked: the replicas are all
        of them (inner and outer), the note splits them."""
        setting = self.setting
        config = self.method_config(method)
        config.tune.grid = setting.nested_grid
        config.tune.inner_folds = setting.nested_inner_folds
        config.tune.seeds = (0,)
        figures = self.loso(config, "stacked")
        outer = figures["replicas"]
        figures["replicas"] = figures["of_replicas"]
        grid = ", ".join(
            f"{section}.{name} {list(values)}"
            for section, fields in setting.nested_grid.items()
            for name, values in fields.items()
        )
        figures["note"] = (
            f"nested over {grid}, {setting.nested_inner_folds} inner folds: "
            f"{figures['of_replicas'] - outer} inner + {outer} outer replicas in "
            f"{figures['chunks']} chunks"
        )
        return figures

    def composite(self) -> dict:
        setting = self.setting
        config = experiment_config(
            self.config_name(setting.composite_method), self.data_dir, setting.composite_overrides
        )
        config.data.builder_config = COMPOSITE_CONFIG
        config.seeds = setting.composite_seeds
        steps = setting.composite_steps or config.train.steps
        schedule(config, steps, config.engine.steps_per_dispatch, setting.batch_size)
        tic = time.perf_counter()
        dataset = self.dataset(config)
        load_s = time.perf_counter() - tic
        figures = measure_loso(config, "auto", dataset)
        figures["note"] = (
            f"{dataset.num_samples} samples, {len(set(dataset['subject']))} subjects, "
            f"{len(dataset.class_names)} classes, {steps} steps; building/loading the data "
            f"took {load_s:.0f} s more"
        )
        return figures

    def pretraining(self) -> dict:
        from mer_jax.train import RUNS

        setting = self.setting
        config = experiment_config("ma2mi_pretrain", self.data_dir, setting.macro_overrides)
        for dotted, value in setting.pretrain_changes.items():
            section, key = dotted.split(".")
            config[section][key] = value
        schedule(config, setting.pretrain_steps, config.engine.steps_per_dispatch)
        corpus = self.dataset(config)
        with tempfile.TemporaryDirectory() as workdir:
            run = RUNS["pretrain"](config, workdir, corpus)
            tic = time.perf_counter()
            metrics = run.train()
            wall = time.perf_counter() - tic
        return {
            "mode": "data-parallel",
            "wall_s": round(wall, 2),
            "compile_s": round(metrics["compile_s"], 2),
            "frames_per_s": round(metrics["frames_per_s"], 1),
            "devices": metrics["num_devices"],
            "note": f"{metrics['num_pairs']} pairs, batch {config.train.batch_size}, "
            f"{metrics['steps']} steps",
        }

    def run(self) -> None:
        setting = self.setting
        row = {"data": "synthetic_me", "seeds": len(setting.seeds), "steps": setting.steps}
        for method in setting.methods:
            self.measure(
                {"measurement": "stacked float32", **self.named(method), **row},
                lambda m=method: self.loso(self.method_config(m), "stacked"),
            )
        self.measure(
            {"measurement": "nested stacked float32", **self.named(setting.nested_method), **row},
            lambda: self.nested(setting.nested_method),
        )
        self.measure(
            {
                "measurement": "end to end (engine.mode=auto)",
                **self.named(setting.composite_method),
                "data": f"synthetic_me/{COMPOSITE_CONFIG}",
                "seeds": len(setting.composite_seeds),
            },
            self.composite,
        )
        for method in setting.methods:
            self.measure(
                {"measurement": "sequential float32", **self.named(method), **row},
                lambda m=method: self.sequential(m),
            )
        for method in setting.methods:
            self.measure(
                {"measurement": "stacked bfloat16", **self.named(method), **row},
                lambda m=method: self.loso(self.method_config(m, "bfloat16"), "stacked"),
            )
        self.measure(
            {
                "measurement": "MA2MI pre-training",
                "method": "MA2MI",
                "config": "ma2mi_pretrain",
                "data": "synthetic_macro",
                "steps": setting.pretrain_steps,
            },
            self.pretraining,
        )


def extrapolated(figures: dict[str, Any]) -> dict[str, Any]:
    """A sequential run of some replicas, its wall time extended to all of them by their
    training time: what is done once (compiling, the reports) is not repeated, and what
    each further replica adds besides training (its checkpoint, its prediction) is not
    counted, so the extrapolated wall time is a lower bound."""
    trained, planned = figures["replicas"], figures["of_replicas"]
    if trained == planned:
        return figures
    per_replica = figures["train_s"] / trained
    extra = per_replica * (planned - trained)
    return figures | {
        "measured_wall_s": figures["wall_s"],
        "wall_s": round(figures["wall_s"] + extra, 2),
        "note": f"wall extrapolated from {trained} of {planned} replicas by training time "
        f"(measured {figures['wall_s']:.1f} s; a lower bound)",
    }


def device_peak_bytes() -> int | None:
    """The first device's peak memory in use since the process started, where reported."""
    return (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")


def _cell(row: dict[str, Any], key: str, spec: str = "") -> str:
    value = row.get(key)
    return "" if value is None else format(value, spec)


def markdown_table(result: dict[str, Any]) -> str:
    """The results as a markdown table, with the machine above it."""
    lines = [
        f"Backend {result['backend']}: {result['num_devices']} x {result['device_kind']}; "
        f"jax {result['jax']}; setting `{result['setting']['name']}`; "
        f"{result['elapsed_s']:.0f} s in all (budget {result['budget_s']:.0f} s).",
        "",
        "| measurement | method | config | data | replicas | layout | wall s | compile s "
        "| samples/s | MB/device (XLA) | UF1 | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if "skipped" in row or "error" in row:
            why = row.get("skipped") or row["error"]
            cells = [row["measurement"], row["method"], row["config"], row["data"]] + [""] * 7
            lines.append("| " + " | ".join([*cells, why.replace("|", "/")]) + " |")
            continue
        if "frames_per_s" in row:
            throughput = f"{row['frames_per_s']:,.0f} frames/s"
            replicas = ""
        else:
            throughput = f"{row['train_samples_per_s']:,.0f}"
            replicas = f"{row['replicas']}/{row['of_replicas']}"
        layout = " ".join(
            str(row[key]) for key in ("mode", "loop", "compute_dtype") if row.get(key)
        )
        memory = row.get("compiled_bytes_per_device")
        cells = [
            row["measurement"],
            row["method"],
            f"`{row['config']}`",
            row["data"],
            replicas,
            layout,
            _cell(row, "wall_s", ".1f"),
            _cell(row, "compile_s", ".1f"),
            throughput,
            "" if memory is None else f"{memory / 2**20:,.0f}",
            _cell(row, "uf1", ".3f"),
            row.get("note", ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    peak = result["device_peak_bytes"]
    lines += [
        "",
        "Device peak memory over the suite: "
        + ("not reported by this backend" if peak is None else f"{peak / 2**20:,.0f} MB"),
    ]
    return "\n".join(lines) + "\n"


def run_suite(
    setting: Setting, out: pathlib.Path, data_dir: str | None = None, budget_s: float = 0
) -> dict[str, Any]:
    """Runs every measurement of `setting` and returns the results; results.json and
    results.md in `out` are rewritten after each measurement."""
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    device = jax.devices()[0]
    result: dict[str, Any] = {
        "setting": dataclasses.asdict(setting),
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "num_devices": len(jax.devices()),
        "jax": jax.__version__,
        "started": started,
    }
    out.mkdir(parents=True, exist_ok=True)

    def write(rows: list[dict[str, Any]]) -> None:
        result.update(
            elapsed_s=round(suite.elapsed(), 1),
            budget_s=suite.budget_s,
            device_peak_bytes=device_peak_bytes(),
            rows=rows,
        )
        (out / "results.json").write_text(json.dumps(result, indent=2))
        (out / "results.md").write_text(markdown_table(result))

    suite = Suite(setting, data_dir, budget_s or setting.budget_s, write)
    suite.run()
    return result


def main(argv: list[str] | None = None) -> int:
    """Runs the suite; exit code 1 if a measurement failed."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device_suite", description=__doc__)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="full")
    parser.add_argument("--out", default="runs/device_suite", help="folder of the results")
    parser.add_argument("--data_dir", default=None, help="built datasets cache")
    parser.add_argument("--budget_s", type=float, default=0, help="0: the setting's budget")
    args = parser.parse_args(argv)
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint at INFO.
    out = pathlib.Path(args.out)
    result = run_suite(SETTINGS[args.setting], out, args.data_dir, args.budget_s)
    print((out / "results.md").read_text())
    # The smoke setting only checks that the suite runs: its figures are no result.
    if args.setting != "smoke":
        write_section(
            f"device_suite_{args.setting}",
            f"The device suite ({args.setting})",
            (out / "results.md").read_text(),
            command_line("benchmarks.device_suite"),
        )
    return 1 if any("error" in row for row in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
