r"""How much of the label a linear model finds in each method's input, under the same LOSO.

  python -m benchmarks.linear_probe --config configs/miacnet.py --out runs/probe.json

A ridge classifier (one-hot targets, features standardised on each fold's training
subjects only) on, per sample:
- `flow`: the stored TV-L1 onset->apex flow (u, v at S x S), what STSTNet and FR read;
- `motion_image`: MIACNet's action-branch input, `miacnet.preprocess_pair`'s motion
  image (apex - onset at the config's input size, divided by its RMS);
- `difference`: the same apex - onset difference without the division by its RMS.
It trains nothing on the accelerator and takes seconds; it tells whether a model
trailing the others lacks signal in its input or fails to use it (README, MIACNet).
"""

import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from benchmarks import write_results

_CONFIG = config_flags.DEFINE_config_file("config", "configs/miacnet.py", "Experiment config.")
_PENALTIES = flags.DEFINE_list("penalties", ["0.01", "0.1", "1", "10"], "Ridge penalties.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")


def ridge_loso(features: np.ndarray, labels: np.ndarray, folds, num_classes: int, penalty: float):
    """Predictions of a one-vs-rest ridge fit per fold; `penalty` is per training sample."""
    features = features.reshape(len(features), -1).astype(np.float64)
    preds = np.empty(len(labels), np.int64)
    for train, test in zip(folds.train_mask, folds.test_mask, strict=True):
        mean, std = features[train].mean(0), features[train].std(0) + 1e-8
        a, b = (features[train] - mean) / std, (features[test] - mean) / std
        targets = np.eye(num_classes)[labels[train]]
        # Dual form: the features outnumber the samples.
        gram = a @ a.T + penalty * len(a) * np.eye(len(a))
        preds[test] = np.argmax(b @ (a.T @ np.linalg.solve(gram, targets)), axis=1)
    return preds


def probe_features(dataset, model_config) -> dict[str, np.ndarray]:
    from mer_jax.models import miacnet

    size, grayscale = model_config.input_size, model_config.grayscale
    onset, apex = jnp.asarray(dataset["onset_image"]), jnp.asarray(dataset["apex_image"])
    inputs = miacnet.preprocess_pair(onset, apex, input_size=size, grayscale=grayscale)
    motion, scale = np.asarray(inputs["motion"]), np.asarray(inputs["motion_scale"])
    return {
        "flow": dataset["flow"][..., :2].astype(np.float32),
        "motion_image": motion,
        # preprocess_pair divided the difference by `scale`; undone, it is the raw one.
        "difference": motion * scale[:, None, None, None],
    }


def main(argv: list[str]) -> None:
    del argv
    import data_builders
    from mer_jax.data import loso
    from mer_jax.evaluate import metrics

    config = _CONFIG.value
    dataset = data_builders.load(config.data)
    labels = dataset.labels
    folds = loso.make_folds(
        config.data.split, subjects=dataset["subject"], datasets=dataset["dataset"]
    )
    num_classes = len(dataset.class_names)
    results = []
    print(f"{'input':<14}{'penalty':>8}{'UF1':>8}{'UAR':>8}{'acc':>8}")
    for name, features in probe_features(dataset, config.model).items():
        for penalty in map(float, _PENALTIES.value):
            preds = ridge_loso(features, labels, folds, num_classes, penalty)
            scores = metrics.classification_metrics(labels, preds, num_classes)
            row = {"input": name, "shape": list(features.shape[1:]), "penalty": penalty}
            row |= {k: round(scores[k], 4) for k in ("uf1", "uar", "accuracy")}
            results.append(row)
            print(
                f"{name:<14}{penalty:>8g}{row['uf1']:>8.3f}{row['uar']:>8.3f}"
                f"{row['accuracy']:>8.3f}"
            )
    print(f"({len(labels)} samples, {folds.num_folds} folds; chance UF1 about 1/{num_classes})")
    write_results(_OUT.value, results)


if __name__ == "__main__":
    app.run(main)
