"""The AU oracle: a nested ridge classifier on the true AU sets, under LOSO folds."""

import fixtures
import numpy as np

import data_builders
from benchmarks import probes
from benchmarks.probes import au_oracle
from mer_jax.data import loso
from mer_jax.evaluate import metrics


def _clips(rng: np.random.Generator, num_subjects: int = 6, per_subject: int = 12):
    subjects = np.repeat(np.arange(num_subjects), per_subject)
    labels = rng.integers(0, 3, len(subjects))
    return subjects, labels


def test_oracle_finds_a_label_its_aus_give_away():
    rng = np.random.default_rng(0)
    subjects, labels = _clips(rng)
    # Each class shows its own AU, plus an AU every class shares at random.
    action_units = np.zeros((len(labels), 8))
    action_units[np.arange(len(labels)), labels] = 1.0
    action_units[:, 5] = rng.integers(0, 2, len(labels))
    folds = loso.leave_one_group_out(subjects)
    preds, chosen = au_oracle(action_units, labels, subjects, folds, 3, [0.01, 0.1, 1.0])
    assert metrics.classification_metrics(labels, preds, 3)["uf1"] == 1.0
    assert len(chosen) == folds.num_folds and set(chosen) <= {0.01, 0.1, 1.0}


def test_oracle_is_at_chance_when_the_aus_say_nothing():
    rng = np.random.default_rng(1)
    subjects, labels = _clips(rng, num_subjects=8, per_subject=20)
    action_units = rng.integers(0, 2, (len(labels), 8)).astype(np.float64)
    folds = loso.leave_one_group_out(subjects)
    preds, _ = au_oracle(action_units, labels, subjects, folds, 3, [0.1, 1.0])
    assert metrics.classification_metrics(labels, preds, 3)["uf1"] < 0.5


synthetic_data_dir = fixtures.synthetic_data_dir


def test_bounds_are_the_oracle_and_the_probe_on_the_configs_own_input(synthetic_data_dir):
    config = fixtures.tiny_config(synthetic_data_dir)
    dataset = data_builders.load(config.data)
    found = probes.bounds(dataset, config, penalties=(0.1, 1.0))
    labels, subjects = dataset.labels, dataset["subject"]
    folds = loso.make_folds(config.data.split, subjects=subjects, datasets=dataset["dataset"])
    num_classes = len(dataset.class_names)
    oracle, _ = au_oracle(dataset["action_units"], labels, subjects, folds, num_classes, (0.1, 1.0))
    own = probes.probe_features(dataset, config)["input"]
    assert own.shape == (len(labels), 28 * 28 * 3)  # STSTNet reads three 28 x 28 maps
    probe, _ = probes.nested_ridge_loso(own, labels, subjects, folds, num_classes, (0.1, 1.0))
    assert found == {
        "ceiling": metrics.classification_metrics(labels, oracle, num_classes)["uf1"],
        "floor": metrics.classification_metrics(labels, probe, num_classes)["uf1"],
    }


def test_the_results_table_places_each_row_between_its_floor_and_ceiling(tmp_path):
    from benchmarks import results_table

    row = results_table.ROWS[0]
    metrics_row = {"seeds": [0], "accuracy": 0.5, "accuracy_std": 0.0}
    # Summed over the seeds; class c has no clip but was predicted once.
    metrics_row |= {
        "class_names": ["a", "b", "c"],
        "confusion_matrix": [[2, 1, 0], [0, 1, 1], [0, 0, 0]],
    }
    for key, value in (("uf1", 0.5), ("uar", 0.5)):
        metrics_row |= {key: value, f"{key}_std": 0.0, f"{key}_ci": [0.4, 0.6]}
    result = {
        "metrics": metrics_row,
        "bounds": {"ceiling": 0.7, "floor": 0.6},
        "train_s": None,
        "replicas": None,
        "build": "b",
        "machine": "m",
        "date": "d",
    }
    table = results_table.markdown([row], {row.name: result}, tmp_path)
    cells = [c.strip() for c in table.splitlines()[2].split("|")]
    # Below the floor by its whole distance to the ceiling.
    assert cells[3:6] == ["0.700", "0.600", "-1.00"]
    # Where the row gains or loses: per-class F1 (a: TP 2, FP 0, FN 1; b: TP 1, FP 1, FN 1).
    per_class = table.splitlines()[table.splitlines().index("| run | a | b | c |") + 2]
    assert per_class == f"| {row.name} | 0.80 (3/2) | 0.50 (2/2) | absent (0/1) |"
