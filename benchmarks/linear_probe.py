r"""How much of the label a linear model finds in each method's own input, under the same LOSO.

  python -m benchmarks.linear_probe --config configs/fr.py --out runs/probe_fr.json

A ridge classifier (one-hot targets, features standardised on each fold's training
subjects only) on, per sample:
- `input`: what the config's network reads, i.e. its model's `prepare(train=False)`
  output (the `INPUTS` keys: STSTNet's and FR's min-max motion maps, LTR3O's evaluation
  candidates, DeRe-GRL's node features, MIACNet's motion image);
- `flow`: the stored TV-L1 onset->apex flow (u, v at S x S), unnormalised;
- `unscaled`: the input times its per-sample scale, where the model divides by one
  (MIACNet's apex - onset before the division by its RMS).
Every penalty of `--penalties` is reported, and `nested`: the penalty chosen per outer
fold by leave-one-subject-out over that fold's training subjects alone (best pooled inner
UF1, a tie to the smaller penalty), so the probe is selected as leak-free as a network
(docs/evaluation.md). It trains nothing on the accelerator and takes seconds; it tells whether
a model trailing the others lacks signal in its input or fails to use it (RESULTS.md).
"""

import sys

import numpy as np
from absl import flags
from ml_collections import config_flags

import launch
from benchmarks import command_line, run_app, write_results, write_section
from benchmarks.probes import PENALTIES, nested_ridge_loso, probe_features, ridge_loso

_CONFIG = config_flags.DEFINE_config_file("config", "configs/miacnet.py", "Experiment config.")
# Every model field at its default, as launch.py reads a config: any --config.model.X works.
flags.FLAGS["config"].parser = launch.config_file_parser(sys.argv)
_PENALTIES = flags.DEFINE_list("penalties", [f"{p:g}" for p in PENALTIES], "Ridge penalties.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")


def main(argv: list[str]) -> None:
    del argv
    import data_builders
    from mer_jax.data import loso
    from mer_jax.evaluate import metrics

    config = _CONFIG.value
    dataset = data_builders.load(config.data)
    labels, subjects = dataset.labels, dataset["subject"]
    folds = loso.make_folds(config.data.split, subjects=subjects, datasets=dataset["dataset"])
    num_classes = len(dataset.class_names)
    penalties = [float(p) for p in _PENALTIES.value]
    results = []
    print(f"{config.model.name}: {'input':<10}{'penalty':>10}{'UF1':>8}{'UAR':>8}{'acc':>8}")

    def report(name: str, features: np.ndarray, penalty: str, preds: np.ndarray) -> dict:
        scores = metrics.classification_metrics(labels, preds, num_classes)
        row = {"model": config.model.name, "input": name, "shape": list(features.shape[1:])}
        row |= {"penalty": penalty} | {k: round(scores[k], 4) for k in ("uf1", "uar", "accuracy")}
        print(
            f"{config.model.name}: {name:<10}{penalty:>10}{row['uf1']:>8.3f}{row['uar']:>8.3f}"
            f"{row['accuracy']:>8.3f}"
        )
        results.append(row)
        return row

    for name, features in probe_features(dataset, config).items():
        for penalty in penalties:
            preds = ridge_loso(features, labels, folds, num_classes, penalty)
            report(name, features, f"{penalty:g}", preds)
        preds, chosen = nested_ridge_loso(features, labels, subjects, folds, num_classes, penalties)
        row = report(name, features, "nested", preds)
        row["chosen_penalties"] = chosen
    print(f"({len(labels)} samples, {folds.num_folds} folds; chance UF1 about 1/{num_classes})")
    write_results(_OUT.value, results)
    table = ["| input | feature shape | penalty | UF1 | UAR | accuracy |", "|---" * 6 + "|"]
    table += [
        f"| {r['input']} | {tuple(r['shape'])} | {r['penalty']} | {r['uf1']:.3f} | "
        f"{r['uar']:.3f} | {r['accuracy']:.3f} |"
        for r in results
    ]
    write_section(
        f"linear_probe_{config.model.name}",
        f"What a linear model finds in {config.model.name}'s input",
        f"Ridge regression on each input of build `{dataset.metadata['build']}` under the "
        f"config's LOSO ({len(labels)} samples, "
        f"{folds.num_folds} folds); `nested`: the penalty chosen per outer fold by LOSO over "
        "its training subjects.\n\n" + "\n".join(table),
        command_line("benchmarks.linear_probe"),
    )


if __name__ == "__main__":
    run_app(main)
