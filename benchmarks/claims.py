r"""The methods on trial: each paper's claim and each suspected cause of a network trailing
a linear map, measured as paired differences on the same build, folds and seeds.

  python -m benchmarks.claims --root runs/results --trials runs/trials
  python -m benchmarks.claims --root runs/results --trials runs/trials --only ststnet_scale

Two tables go into RESULTS.md (section `claims`):
- **Claims**: what a paper says of its method (better than STSTNet, or one of its modules
  helping), read from the results table's rows (`benchmarks.results_table`, trained under
  `--root`) or from a trial. Verdict: `reproduced` when the paired difference's 95%
  subject-bootstrap interval lies above 0, `contradicted` when it lies below 0 (the
  paper's direction excluded), `unresolved` when it holds 0.
- **Trials**: one change each (`TRIALS`), a run of the method's config with that change,
  trained here under `--trials` (resumable: a finished trial is only re-read), paired with
  the unchanged run. Reading: `helps`, `hurts` or `no difference shown` by the same rule.
  What was decided from each (a defect fixed, an option kept, a hypothesis rejected) is in
  docs/methods.md ("The methods on trial").
Every trial is a fixed config (its own settings, nothing chosen on the outer LOSO); a row
or trial not yet trained is listed with the command that trains it.
"""

import dataclasses
from pathlib import Path
from typing import Any

from absl import flags

from benchmarks import run_app, write_section
from benchmarks.results_table import (
    DERE_GRL_FIRST_DROPOUT,
    FR_FIRST_LR,
    FR_POOLED,
    LTR3O_POOLED,
    MIACNET_FIRST,
    MIACNET_FIRST_DECAY,
    ROWS,
    Row,
    per_class_lines,
    run_row,
    slug,
)

_TRIALS = flags.DEFINE_string("trials", "runs/trials", "Folder of the trials' workdirs.")
_ONLY = flags.DEFINE_list("only", None, "Trials to train (their names); default all.")

# What the papers report on the MEGC 2019 composite (LOSO, 442 clips), UF1.
_STSTNET_COMPOSITE = "STSTNet .7353"


@dataclasses.dataclass(frozen=True)
class Trial:
    """A change to one method (`row`, trained under --trials) and the run it is paired with
    (`against`: a results-table row's or another trial's name)."""

    row: Row
    hypothesis: str
    against: str


@dataclasses.dataclass(frozen=True)
class Claim:
    """A paper's claim that run `first` beats run `second` (row or trial names)."""

    text: str
    paper: str
    first: str
    second: str


# The settings each method's trials were trained at where its config has since moved to
# its nested choice (`results_table`'s pins): its trials and their base run keep them.
_TRIALS_TRAINED_AT = {
    "fr": FR_POOLED + FR_FIRST_LR,
    "ltr3o": LTR3O_POOLED,
    "dere_grl": DERE_GRL_FIRST_DROPOUT,
    "miacnet": MIACNET_FIRST_DECAY + MIACNET_FIRST,
}


def _row(name: str, config: str, changes: tuple[tuple[str, object], ...] = ()) -> Row:
    """A trial's run: its method's config at the settings its trials were trained at
    (`_TRIALS_TRAINED_AT`), with `changes` over them."""
    settings = dict(_TRIALS_TRAINED_AT.get(config, ()))
    settings.update(changes)
    return Row(name, config, tuple(settings.items()))


def _base_run(method: str, config: str) -> Trial:
    """The "<method> fixed" run: the config at its trials' settings, the run they are paired with
    (the table's rows of these methods are nested, so a one-change trial cannot pair
    with them). Paired with itself, it is listed only as the other side of its trials."""
    name = f"{method} fixed"
    return Trial(_row(name, config), "the config at its trials' settings: their base", name)


TRIALS = (
    Trial(
        _row("STSTNet scale", "ststnet", (("model.motion_norm", "scale"),)),
        "per-sample, per-channel min-max of the flow discards the u:v ratio and the "
        "amplitude (one scale for u and v instead)",
        "STSTNet",
    ),
    Trial(
        _row("STSTNet balanced", "ststnet", (("train.sampling", "balanced"),)),
        "class imbalance with uniform sampling, judged by a macro average (each class "
        "alike in a batch instead)",
        "STSTNet",
    ),
    Trial(
        _row("STSTNet flip", "ststnet", (("model.hflip", True),)),
        "a network fits its 15 training subjects (training accuracy far above test) where "
        "the probe is penalised: mirrored faces as a regulariser",
        "STSTNet",
    ),
    Trial(
        _row("LTR3O same", "ltr3o", (("model.pool_padding", "SAME"),)),
        "LTR3O's encoder trims its 14 px input unevenly (14 -> 7 -> 3 -> 1): the bottom rows "
        "and right columns barely reach the feature (padded pooling instead)",
        "LTR3O, pooled readout",
    ),
    Trial(
        _row(
            "LTR3O same flatten",
            "ltr3o",
            (("model.pool_padding", "SAME"), ("model.readout", "flatten")),
        ),
        "location thrown away on classes defined by location: the encoder's global "
        "average pooling (the flattened last maps instead)",
        "LTR3O same",
    ),
    _base_run("DeRe-GRL", "dere_grl"),
    Trial(
        _row("DeRe-GRL anatomical", "dere_grl", (("model.learnable_adjacency", False),)),
        "the learned adjacency starts as a near-uniform softmax, so each node first "
        "receives the mean of all 68 (the anatomical graph alone instead)",
        "DeRe-GRL fixed",
    ),
    Trial(
        _row("DeRe-GRL ADM nodes", "dere_grl", (("model.adm_pooling", "nodes"),)),
        "the ADM pools a component's nodes into their mean and max, so which landmark of "
        "it moved is lost (every node of the component instead)",
        "DeRe-GRL fixed",
    ),
    Trial(
        _row(
            "DeRe-GRL anatomical, ADM nodes",
            "dere_grl",
            (("model.learnable_adjacency", False), ("model.adm_pooling", "nodes")),
        ),
        "the two losses of location compound: the learned adjacency mixes every node into "
        "every other, then the ADM's pooling forgets which node moved (both undone "
        "instead)",
        "DeRe-GRL anatomical",
    ),
    _base_run("FR", "fr"),
    Trial(
        _row("FR without proposal", "fr", (("model.weight_prop", 0.0),)),
        "FR's proposal loss (five per-class BCE terms, about 3.5 at initialisation against "
        "1.6 for the classification loss) dominates its training",
        "FR fixed",
    ),
    Trial(
        _row("FR scale", "fr", (("model.motion_norm", "scale"),)),
        "min-max of the flow, as for STSTNet",
        "FR fixed",
    ),
    Trial(
        _row("FR regularised", "fr", (("model.hflip", True), ("model.dropout", 0.3))),
        "FR trains without any regulariser and is judged at its last step (training "
        "accuracy 0.74-0.86 against a test UF1 near 0.45): flips and dropout instead",
        "FR fixed",
    ),
    Trial(
        _row("FR flatten", "fr", (("model.readout", "flatten"),)),
        "location thrown away on classes defined by location: FR's class features are "
        "global averages of a_c * F (the classifier reads a_c * F flattened instead)",
        "FR fixed",
    ),
    _base_run("MIACNet", "miacnet"),
    Trial(
        _row("MIACNet without face", "miacnet", (("model.position_input", "none"),)),
        "MIACNet's position branch sees the onset face: an identity shortcut with 15 "
        "training subjects (a blank face instead: position is a learned map of locations)",
        "MIACNet fixed",
    ),
    Trial(
        _row("MIACNet decay kernels", "miacnet", (("train.weight_decay_on", "kernels"),)),
        "weight decay 1.0 also shrinks the norms' scales and the position embeddings "
        "(decay on the kernels only instead)",
        "MIACNet fixed",
    ),
)

CLAIMS = (
    # The paper's FR at its trials' settings: the table's nested FR rows cost about three of
    # these each.
    Claim("FR beats STSTNet", f"FR .7838 against {_STSTNET_COMPOSITE}", "FR fixed", "STSTNet"),
    Claim("LTR3O beats STSTNet", "above STSTNet", "LTR3O", "STSTNet"),
    Claim("DeRe-GRL beats STSTNet", "above STSTNet", "DeRe-GRL", "STSTNet"),
    Claim(
        "MIACNet after MA2MI beats STSTNet",
        "above STSTNet",
        "MIACNet after MA2MI pre-training",
        "STSTNet",
    ),
    Claim("LTR3O's ranking helps", "its ablation", "LTR3O", "LTR3O without ranking"),
    Claim("LTR3O's calibration helps", "its ablation", "LTR3O", "LTR3O without calibration"),
    Claim(
        "LTR3O's several candidates beat one", "its ablation", "LTR3O", "LTR3O, a single candidate"
    ),
    Claim("DeRe-GRL's ADM helps", "its ablation", "DeRe-GRL", "DeRe-GRL without ADM"),
    Claim("DeRe-GRL's RRM helps", "its ablation", "DeRe-GRL", "DeRe-GRL without RRM"),
    Claim("FR's proposal module helps", "its ablation", "FR fixed", "FR without proposal"),
    Claim(
        "MA2MI pre-training helps MIACNet",
        "its ablation",
        "MIACNet after MA2MI pre-training",
        "MIACNet from scratch",
    ),
    Claim(
        "MA2MI pre-training beats a 1-step control",
        "the control is ours",
        "MIACNet after MA2MI pre-training",
        "MIACNet after a 1-step MA2MI pre-training (control)",
    ),
    # Ours: what the methods become where this instrument points (docs/methods.md).
    Claim("FR as shipped beats STSTNet", "ours: the flattened readout", "FR", "STSTNet"),
    Claim(
        "LTR3O's encoder on one candidate beats STSTNet",
        "ours: without the 3O candidates",
        "LTR3O, a single candidate",
        "STSTNet",
    ),
    Claim(
        "DeRe-GRL keeping location beats our first reading",
        "ours: the anatomical graph and every ADM node",
        "DeRe-GRL anatomical, ADM nodes",
        "DeRe-GRL fixed",
    ),
    Claim(
        "DeRe-GRL keeping location beats STSTNet",
        "ours: the anatomical graph and every ADM node",
        "DeRe-GRL anatomical, ADM nodes",
        "STSTNet",
    ),
)

_TABLE = {row.name: row for row in ROWS}
_BY_NAME = {trial.row.name: trial for trial in TRIALS}


def workdir_of(name: str, root: Path, trials: Path) -> Path:
    """Where the run `name` lives: a results-table row under `root`, a trial under `trials`."""
    if name in _TABLE:
        return root / slug(name)
    if name in _BY_NAME:
        return trials / slug(name)
    raise KeyError(f"no row or trial named {name!r}")


def _command(name: str, root: Path, trials: Path) -> str:
    if name in _TABLE:
        return f"`python -m benchmarks.results_table --root {root} --rows {slug(name)}`"
    return f"`python -m benchmarks.claims --root {root} --trials {trials} --only {slug(name)}`"


def paired(first: str, second: str, root: Path, trials: Path) -> dict[str, Any] | None:
    """The paired UF1 difference first - second, or None while one is not trained."""
    from mer_jax import workdir as layout
    from mer_jax.evaluate import compare

    a, b = workdir_of(first, root, trials), workdir_of(second, root, trials)
    if not (a / layout.METRICS_JSON).exists() or not (b / layout.METRICS_JSON).exists():
        return None
    return compare.compare(a, b)["uf1"]


def verdict(difference: dict[str, Any], words: tuple[str, str, str]) -> str:
    """words[0] when the interval lies above 0, words[1] below 0, else words[2]."""
    low, high = difference["interval"]
    return words[0] if low > 0 else words[1] if high < 0 else words[2]


def _difference(found: dict[str, Any]) -> str:
    low, high = found["interval"]
    return f"{found['difference']:+.3f} [{low:+.3f}, {high:+.3f}]"


def _pending(names: tuple[str, ...], root: Path, trials: Path) -> str:
    from mer_jax import workdir as layout

    missing = [n for n in names if not (workdir_of(n, root, trials) / layout.METRICS_JSON).exists()]
    return "not trained yet: " + "; ".join(_command(n, root, trials) for n in missing)


def tables(root: Path, trials: Path) -> str:
    """The claims table and the trials table, in markdown."""
    lines = [
        "| claim | the paper | compared (first - second) | UF1 difference [95% interval] | "
        "verdict |",
        "|---|---|---|---|---|",
    ]
    for claim in CLAIMS:
        found = paired(claim.first, claim.second, root, trials)
        pair = f"{claim.first} - {claim.second}"
        if found is None:
            cells = f"| {_pending((claim.first, claim.second), root, trials)} |"
        else:
            words = ("reproduced", "contradicted", "unresolved")
            cells = f"{_difference(found)} | {verdict(found, words)} |"
        lines.append(f"| {claim.text} | {claim.paper} | {pair} | {cells}")
    lines += [
        "",
        "| trial | suspected cause | change | paired with | UF1 | UF1 difference [95% "
        "interval] | reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for trial in TRIALS:
        if trial.against == trial.row.name:
            continue  # a base run: it appears as the pair of the trials against it
        found = paired(trial.row.name, trial.against, root, trials)
        change = trial.row.command
        if found is None:
            cells = f"| {_pending((trial.row.name, trial.against), root, trials)} |"
            uf1 = ""
        else:
            cells = f"{_difference(found)} | "
            cells += verdict(found, ("helps", "hurts", "no difference shown")) + " |"
            uf1 = f"{_metrics(workdir_of(trial.row.name, root, trials))['uf1']:.3f}"
        lines.append(
            f"| {trial.row.name} | {trial.hypothesis} | {change} | {trial.against} | {uf1} | "
            f"{cells}"
        )
    lines += ["", *per_class_lines(_trained_trials(root, trials))]
    return "\n".join(lines) + "\n"


def _trained_trials(root: Path, trials: Path) -> list[tuple[str, dict[str, Any]]]:
    """Each trained trial (base runs included) and its metrics, in the trials' order."""
    runs = [(t.row.name, _metrics(workdir_of(t.row.name, root, trials))) for t in TRIALS]
    return [(name, metrics) for name, metrics in runs if metrics is not None]


def _metrics(run: Path) -> dict[str, Any] | None:
    """A finished run's metrics.json, or None while it is not trained."""
    import json

    from mer_jax import workdir as layout

    path = run / layout.METRICS_JSON
    return json.loads(path.read_text()) if path.exists() else None


def main(argv: list[str]) -> None:
    del argv
    root, trials = Path(flags.FLAGS.root), Path(_TRIALS.value)
    trials.mkdir(parents=True, exist_ok=True)
    known = {slug(t.row.name) for t in TRIALS}
    chosen = set(map(slug, _ONLY.value)) if _ONLY.value is not None else known
    if chosen - known:
        raise SystemExit(f"error: unknown trials {sorted(chosen - known)}; trials: {sorted(known)}")
    for trial in TRIALS:
        if slug(trial.row.name) in chosen:
            print(f"== {trial.row.name}", flush=True)
            run_row(trial.row, trials)
    body = tables(root, trials)
    print(body)
    write_section(
        "claims",
        "The methods on trial: the papers' claims and the suspected causes (synthetic, LOSO)",
        "Paired UF1 differences over the same clips, folds and seeds (0, 1, 2), 95% subject-"
        "bootstrap intervals (`python -m mer_jax.evaluate.compare`); the build is the "
        "results table's. What was decided from each trial: docs/methods.md, \"The methods "
        'on trial".\n\n' + body,
        f"python -m benchmarks.claims --root {root} --trials {trials}",
    )


if __name__ == "__main__":
    run_app(main)
