r"""The ceiling and the floor of a build: an AU oracle and the linear probes, same LOSO.

  python -m benchmarks.au_oracle --config configs/ltr3o.py
  (--config, --penalties and --out as `benchmarks.linear_probe`'s; `--nowrite` prints only)

On the build the config loads, under the config's LOSO folds:
- `AU oracle` (the ceiling): a ridge classifier given each clip's true AU set (the
  multi-hot `action_units` of the coding sheet), the penalty chosen per outer fold by
  leave-one-subject-out over its training subjects (as `benchmarks.linear_probe`'s
  `nested`). What the label owes to the AUs a clip shows; a method reading pixels has to
  find them first, so it should land below this.
- `probe on <input>` (the floor): the nested linear probe on the config's own network
  input and on the stored onset->apex flow (`benchmarks.linear_probe`). A method that
  trails it does not use the signal a linear map already finds.
A method's row is read by where it falls between the two. The table goes into
RESULTS.md (`benchmarks.write_section`, key `au_oracle_<builder>_<model>`).
"""


import numpy as np
from absl import flags

# Defines --config, --penalties and --out, shared with the linear probe.
import benchmarks.linear_probe  # noqa: F401
from benchmarks import command_line, run_app, write_results, write_section
from benchmarks.probes import au_oracle, nested_ridge_loso, probe_features

_WRITE = flags.DEFINE_bool("write", True, "Write the table into RESULTS.md.")


def main(argv: list[str]) -> None:
    del argv
    import data_builders
    from mer_jax.data import loso
    from mer_jax.evaluate import metrics

    config = flags.FLAGS.config
    dataset = data_builders.load(config.data)
    labels, subjects = dataset.labels, dataset["subject"]
    folds = loso.make_folds(config.data.split, subjects=subjects, datasets=dataset["dataset"])
    num_classes = len(dataset.class_names)
    penalties = [float(p) for p in flags.FLAGS.penalties]
    rows = []

    def score(name: str, preds: np.ndarray, chosen: list[float]) -> None:
        found = metrics.classification_metrics(labels, preds, num_classes)
        rows.append(
            {"row": name, "chosen_penalties": chosen}
            | {k: round(float(found[k]), 4) for k in ("uf1", "uar", "accuracy")}
        )
        print(f"{name:<28}{found['uf1']:>8.3f}{found['uar']:>8.3f}{found['accuracy']:>8.3f}")

    print(f"{'':<28}{'UF1':>8}{'UAR':>8}{'acc':>8}")
    oracle = au_oracle(dataset["action_units"], labels, subjects, folds, num_classes, penalties)
    score("AU oracle (ceiling)", *oracle)
    for name, features in probe_features(dataset, config).items():
        if name == "unscaled":
            continue
        preds, chosen = nested_ridge_loso(
            features, labels, subjects, folds, num_classes, penalties
        )
        score(f"probe on {config.model.name} {name} (floor)", preds, chosen)
    size = f"{len(labels)} clips, {folds.num_folds} subjects, {num_classes} classes"
    print(f"({size}; chance UF1 about 1/{num_classes})")
    write_results(flags.FLAGS.out, rows)
    if _WRITE.value:
        build = f"`{dataset.metadata['build']}`"
        table = ["| row | UF1 | UAR | accuracy |", "|---|---|---|---|"] + [
            f"| {r['row']} | {r['uf1']:.3f} | {r['uar']:.3f} | {r['accuracy']:.3f} |"
            for r in rows
        ]
        body = (
            f"Build {build} ({size}); nested ridge penalties from {penalties} per outer "
            "fold.\n\n" + "\n".join(table)
        )
        write_section(
            f"au_oracle_{config.data.name}_{config.model.name}",
            f"Ceiling and floor on {build}: AU oracle and linear probes ({config.model.name})",
            body,
            command_line("benchmarks.au_oracle"),
        )


if __name__ == "__main__":
    run_app(main)
