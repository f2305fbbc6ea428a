"""The ceiling and the floor of a build, as plain functions (no flags): ridge probes under
LOSO, the AU oracle, and a row's bounds.

`benchmarks.linear_probe` and `benchmarks.au_oracle` print them for a config;
`benchmarks.results_table` puts the ceiling and the floor beside each of its rows. The
ridge classifier uses one-hot targets and features standardised on each fold's training
subjects only; `nested` picks the penalty per outer fold by leave-one-subject-out over
that fold's training subjects alone (docs/evaluation.md).
"""

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

# Ridge penalties the nested probes choose from (per training sample).
PENALTIES = (0.01, 0.1, 1.0, 10.0)

# The `prepare` outputs each network reads as its input (the rest are targets, priors or
# positions for the losses).
INPUTS = {
    "ststnet": ("motion",),
    "fr": ("motion",),
    "ltr3o": ("motion",),
    "dere_grl": ("low", "high"),
    "miacnet": ("motion",),
}


def ridge_fit_predict(
    train: np.ndarray, labels: np.ndarray, test: np.ndarray, num_classes: int, penalty: float
) -> np.ndarray:
    """Predicted classes of `test` by a one-vs-rest ridge fit on (`train`, `labels`), the
    features standardised on `train`; `penalty` is per training sample."""
    mean, std = train.mean(0), train.std(0) + 1e-8
    a, b = (train - mean) / std, (test - mean) / std
    targets = np.eye(num_classes)[labels]
    # Dual form: the features outnumber the samples.
    gram = a @ a.T + penalty * len(a) * np.eye(len(a))
    return np.argmax(b @ (a.T @ np.linalg.solve(gram, targets)), axis=1)


def ridge_loso(features: np.ndarray, labels: np.ndarray, folds, num_classes: int, penalty: float):
    """Out-of-fold predictions of a ridge fit per fold at one penalty."""
    features = features.reshape(len(features), -1).astype(np.float64)
    preds = np.empty(len(labels), np.int64)
    for train, test in zip(folds.train_mask, folds.test_mask, strict=True):
        preds[test] = ridge_fit_predict(
            features[train], labels[train], features[test], num_classes, penalty
        )
    return preds


def nested_ridge_loso(
    features: np.ndarray,
    labels: np.ndarray,
    subjects: np.ndarray,
    folds,
    num_classes: int,
    penalties: Sequence[float],
) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold predictions with the penalty chosen per outer fold by leave-one-subject-out
    over its training subjects only; returns them and each fold's chosen penalty."""
    from mer_jax.data import loso
    from mer_jax.evaluate import metrics

    features = features.reshape(len(features), -1).astype(np.float64)
    preds = np.empty(len(labels), np.int64)
    chosen = []
    for train, test in zip(folds.train_mask, folds.test_mask, strict=True):
        inner = loso.leave_one_group_out(np.asarray(subjects)[train])
        x, y = features[train], labels[train]
        scores = [
            metrics.classification_metrics(y, ridge_loso(x, y, inner, num_classes, p), num_classes)[
                "uf1"
            ]
            for p in penalties
        ]
        penalty = penalties[int(np.argmax(scores))]  # the first best: the smaller penalty
        chosen.append(penalty)
        preds[test] = ridge_fit_predict(x, y, features[test], num_classes, penalty)
    return preds, chosen


def probe_features(dataset, config) -> dict[str, np.ndarray]:
    """The probe's inputs (module docstring) for every sample of `dataset`."""
    from flax import nnx

    from mer_jax import models

    model_config = models.with_build_settings(config.model, dataset.metadata)
    model = models.create_model(model_config, len(dataset.class_names), rngs=nnx.Rngs(0))
    batch = {field: dataset[field] for field in model.fields}
    prepared = model.prepare(batch, jax.random.key(0), train=False)
    own = np.concatenate(
        [
            np.asarray(prepared[k], np.float32).reshape(len(dataset.labels), -1)
            for k in INPUTS[config.model.name]
        ],
        axis=1,
    )
    features = {"input": own, "flow": dataset["flow"][..., :2].astype(np.float32)}
    if "motion_scale" in prepared:
        scale = np.asarray(prepared["motion_scale"], np.float32).reshape(-1, 1)
        features["unscaled"] = own * scale
    return features


def au_oracle(
    action_units: np.ndarray,
    labels: np.ndarray,
    subjects: np.ndarray,
    folds,
    num_classes: int,
    penalties: Sequence[float],
) -> tuple[np.ndarray, list[float]]:
    """Out-of-fold predictions of the nested ridge classifier on the true AU sets
    (n, num_AUs) multi-hot, and each outer fold's chosen penalty."""
    features = np.asarray(action_units, np.float64).reshape(len(labels), -1)
    return nested_ridge_loso(features, labels, subjects, folds, num_classes, penalties)


def bounds(dataset, config: Any, penalties: Sequence[float] = PENALTIES) -> dict[str, float]:
    """UF1 of the build's AU oracle (`ceiling`) and of the nested probe on the config's own
    network input (`floor`), under the config's LOSO folds."""
    from mer_jax.data import loso
    from mer_jax.evaluate import metrics

    labels, subjects = dataset.labels, dataset["subject"]
    folds = loso.make_folds(config.data.split, subjects=subjects, datasets=dataset["dataset"])
    num_classes = len(dataset.class_names)

    def uf1(features: np.ndarray) -> float:
        preds, _ = nested_ridge_loso(features, labels, subjects, folds, num_classes, penalties)
        return float(metrics.classification_metrics(labels, preds, num_classes)["uf1"])

    return {
        "ceiling": uf1(np.asarray(dataset["action_units"], np.float64)),
        "floor": uf1(probe_features(dataset, config)["input"]),
    }
