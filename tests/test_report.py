"""Leak-free reports: pooling over LOSO folds, per-dataset subsets, seeds, files on disk."""

import json

import numpy as np
import pytest

from mer_jax.evaluate import figures, report
from mer_jax.evaluate.metrics import classification_metrics
from mer_jax.evaluate.report import Predictions

CLASSES = ["negative", "positive", "surprise"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_predictions(rows, num_classes=3, probs=None):
    """Predictions from (sample_id, dataset, subject, fold, seed, label, pred) tuples."""
    columns = list(zip(*rows, strict=True))
    if probs is None:
        # Confident in the prediction; the exact values do not enter the metrics.
        probs = np.full((len(rows), num_classes), 0.1 / (num_classes - 1))
        probs[np.arange(len(rows)), columns[6]] = 0.9
    return Predictions(
        sample_id=np.array(columns[0]),
        dataset=np.array(columns[1]),
        subject=np.array(columns[2]),
        fold=np.array(columns[3]),
        seed=np.array(columns[4]),
        label=np.array(columns[5]),
        pred=np.array(columns[6]),
        probs=probs,
    )


# A composite of two source datasets, one seed; samm has no "surprise" sample but
# predicts one (s1_b).
COMPOSITE = [
    ("casme2/c1_a", "casme2", "c1", 0, 0, 0, 0),
    ("casme2/c1_b", "casme2", "c1", 0, 0, 1, 1),
    ("casme2/c2_a", "casme2", "c2", 1, 0, 2, 2),
    ("casme2/c2_b", "casme2", "c2", 1, 0, 0, 1),
    ("samm/s1_a", "samm", "s1", 2, 0, 0, 0),
    ("samm/s1_b", "samm", "s1", 2, 0, 1, 2),
    ("samm/s1_c", "samm", "s1", 2, 0, 1, 1),
]

# Four samples of two subjects, two seeds: seed 0 is perfect, seed 1 always says 0.
TWO_SEEDS = [
    (sample_id, "casme2", subject, fold, seed, label, label if seed == 0 else 0)
    for seed in (0, 1)
    for sample_id, subject, fold, label in [
        ("a", "p1", 0, 0),
        ("b", "p1", 0, 1),
        ("c", "p2", 1, 0),
        ("d", "p2", 1, 1),
    ]
]


def test_composite_pooled_and_per_dataset_by_hand():
    metrics = report.summarize(make_predictions(COMPOSITE), CLASSES)
    # Pooled, labels 0,1,2,0,0,1,1 vs preds 0,1,2,1,0,2,1:
    # negative: TP 2, FP 0, FN 1 -> F1 4/5, recall 2/3
    # positive: TP 2, FP 1, FN 1 -> F1 2/3, recall 2/3
    # surprise: TP 1, FP 1, FN 0 -> F1 2/3, recall 1
    assert metrics["uf1"] == pytest.approx((4 / 5 + 2 / 3 + 2 / 3) / 3)
    assert metrics["uar"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert metrics["accuracy"] == pytest.approx(5 / 7)
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert metrics["absent_classes"] == []
    assert (metrics["n_samples"], metrics["n_folds"], metrics["seeds"]) == (7, 3, [0])

    casme2 = metrics["per_dataset"]["casme2"]
    # negative: TP 1, FP 0, FN 1 -> F1 2/3, recall 1/2
    # positive: TP 1, FP 1, FN 0 -> F1 2/3, recall 1
    # surprise: TP 1, FP 0, FN 0 -> F1 1,   recall 1
    assert casme2["uf1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert casme2["uar"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert casme2["accuracy"] == pytest.approx(3 / 4)
    assert (casme2["n_samples"], casme2["absent_classes"]) == (4, [])

    samm = metrics["per_dataset"]["samm"]
    # negative: TP 1, FP 0, FN 0 -> F1 1,   recall 1
    # positive: TP 1, FP 0, FN 1 -> F1 2/3, recall 1/2 (the "surprise" guess is its FN)
    # surprise: no true sample -> excluded, although predicted once.
    assert samm["uf1"] == pytest.approx((1 + 2 / 3) / 2)
    assert samm["uar"] == pytest.approx((1 + 1 / 2) / 2)
    assert samm["accuracy"] == pytest.approx(2 / 3)
    assert (samm["n_samples"], samm["absent_classes"]) == (3, ["surprise"])
    assert samm["confusion_matrix"] == [[1, 0, 0], [0, 1, 1], [0, 0, 0]]
    assert samm["uf1_std"] == 0.0


def test_mean_and_population_std_over_two_seeds():
    metrics = report.summarize(make_predictions(TWO_SEEDS, num_classes=2), CLASSES[:2])
    # Seed 0 is perfect: UF1 = UAR = accuracy = 1.
    # Seed 1 predicts 0 for labels 0,1,0,1:
    #   class 0: TP 2, FP 2, FN 0 -> F1 4/6 = 2/3, recall 1
    #   class 1: TP 0, FP 0, FN 2 -> F1 0,         recall 0
    #   UF1 = 1/3, UAR = 1/2, accuracy = 1/2
    assert metrics["per_seed"]["0"] == {"uf1": 1.0, "uar": 1.0, "accuracy": 1.0}
    assert metrics["per_seed"]["1"] == pytest.approx({"uf1": 1 / 3, "uar": 0.5, "accuracy": 0.5})
    assert metrics["uf1"] == pytest.approx(2 / 3)
    assert metrics["uf1_std"] == pytest.approx(1 / 3)  # ddof=0: |1 - 1/3| / 2
    assert metrics["uar"] == pytest.approx(0.75)
    assert metrics["uar_std"] == pytest.approx(0.25)
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["accuracy_std"] == pytest.approx(0.25)
    assert metrics["seeds"] == [0, 1]
    assert metrics["n_samples"] == 4  # distinct samples, not rows
    assert metrics["confusion_matrix"] == [[4, 0], [2, 2]]  # summed over seeds


def test_metrics_pool_folds_instead_of_averaging_them():
    rows = [
        ("a1", "casme2", "A", 0, 0, 0, 0),
        ("a2", "casme2", "A", 0, 0, 1, 1),
        ("b1", "casme2", "B", 1, 0, 0, 0),
        ("b2", "casme2", "B", 1, 0, 0, 0),
        ("b3", "casme2", "B", 1, 0, 0, 0),
        ("b4", "casme2", "B", 1, 0, 1, 0),
    ]
    metrics = report.summarize(make_predictions(rows, num_classes=2), CLASSES[:2])
    # Fold 0 is perfect (UF1 1). Fold 1: class 0 TP 3, FP 1 -> F1 6/7; class 1 F1 0,
    # so UF1 3/7 and the fold average would be 5/7.
    # Pooled: class 0 TP 4, FP 1, FN 0 -> F1 8/9; class 1 TP 1, FN 1 -> F1 2/3; UF1 7/9.
    fold_average = np.mean(
        [
            classification_metrics([0, 1], [0, 1], 2)["uf1"],
            classification_metrics([0, 0, 0, 1], [0, 0, 0, 0], 2)["uf1"],
        ]
    )
    assert fold_average == pytest.approx(5 / 7)
    assert metrics["uf1"] == pytest.approx(7 / 9)
    per_fold = metrics["per_fold"]
    assert per_fold["diagnostic_only"] is True
    assert per_fold["folds"]["0"] == {"accuracy": 1.0, "n_samples": 2, "subjects": ["casme2/A"]}
    assert per_fold["folds"]["1"]["accuracy"] == pytest.approx(3 / 4)


def test_policy_and_summary_text():
    metrics = report.summarize(make_predictions(COMPOSITE), CLASSES)
    assert "pooled" in metrics["policy"] and "ddof=0" in metrics["policy"]
    text = report.format_summary(metrics)
    first, *others = text.splitlines()
    # Each score with its std over seeds and its subject-bootstrap interval.
    assert first.startswith(
        "UF1 0.711 +- 0.000 [0.500, 1.000]  UAR 0.778 +- 0.000 [0.500, 1.000]  "
        "accuracy 0.714 +- 0.000"
    )
    assert first.endswith(
        "(7 samples, 3 folds, 1 seeds; +- std over seeds, [95% subject-bootstrap interval])"
    )
    assert any(line.strip().startswith("casme2: UF1 0.778") for line in others)
    assert any("samm" in line and "absent: surprise" in line for line in others)


def test_summarize_rejects_wrong_class_names():
    with pytest.raises(ValueError, match="3 probability columns but 2 class names"):
        report.summarize(make_predictions(COMPOSITE), CLASSES[:2])


def test_sample_duplicated_in_one_seed_is_an_error():
    rows = [*TWO_SEEDS, ("c", "casme2", "p2", 1, 1, 0, 0)]
    with pytest.raises(ValueError, match="'c' appears more than once for seed 1"):
        make_predictions(rows, num_classes=2)


def test_fold_evaluated_twice_is_caught_by_concatenate():
    fold_0 = make_predictions([row for row in COMPOSITE if row[3] == 0])
    with pytest.raises(ValueError, match="more than once"):
        Predictions.concatenate([make_predictions(COMPOSITE), fold_0])


def test_concatenate_joins_folds():
    parts = [make_predictions([row for row in COMPOSITE if row[3] == fold]) for fold in range(3)]
    joined = Predictions.concatenate(parts)
    assert len(joined) == len(COMPOSITE)
    assert joined.sample_id.tolist() == [row[0] for row in COMPOSITE]


def test_sample_missing_for_one_seed_is_an_error():
    rows = [row for row in TWO_SEEDS if (row[0], row[4]) != ("d", 1)]
    with pytest.raises(ValueError, match=r"seed 1 has no prediction for 1 sample\(s\).*'d'"):
        make_predictions(rows, num_classes=2)


def test_subject_in_two_test_folds_is_an_error():
    rows = [(*row[:3], 5 if row[0] == "casme2/c1_b" else row[3], *row[4:]) for row in COMPOSITE]
    with pytest.raises(ValueError, match=r"subject 'c1' of 'casme2' is tested in folds \[0, 5\]"):
        make_predictions(rows)


def test_sample_changing_label_between_seeds_is_an_error():
    relabelled = ("a", "casme2", "p1", 0, 1, 1, 0)  # sample "a" is class 0 for seed 0
    rows = [relabelled if row[0] == "a" and row[4] == 1 else row for row in TWO_SEEDS]
    with pytest.raises(ValueError, match="every seed must test the same samples"):
        make_predictions(rows, num_classes=2)


def test_out_of_range_prediction_is_an_error():
    rows = [(*COMPOSITE[0][:6], 3), *COMPOSITE[1:]]
    with pytest.raises(ValueError, match=r"pred = 3 for sample 'casme2/c1_a'"):
        make_predictions(rows, probs=np.full((len(rows), 3), 1 / 3))


def test_predictions_csv_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(3, size=9)
    rows = [
        (f"{i:03d}", "smic", f"{i % 3:02d}", i % 3, seed, labels[i], rng.integers(3))
        for seed in (7, 3)
        for i in range(9)
    ]
    order = rng.permutation(len(rows))
    rows = [rows[i] for i in order]
    probs = rng.dirichlet(np.ones(3), size=len(rows)).astype(np.float32)
    original = make_predictions(rows, probs=probs)
    path = tmp_path / "predictions.csv"
    report.write_predictions_csv(path, original, 3)

    lines = path.read_text().splitlines()
    assert lines[0] == "sample_id,dataset,subject,fold,seed,label,pred,p_0,p_1,p_2"
    assert lines[1].startswith("000,smic,00,0,3,")
    loaded = report.read_predictions_csv(path)
    expected = np.lexsort((original.sample_id, original.seed))
    for name in ("sample_id", "dataset", "subject", "fold", "seed", "label", "pred", "probs"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name)[expected])
    assert loaded.sample_id[0] == "000"  # ids stay strings, leading zeros kept


def test_predictions_csv_checks(tmp_path):
    predictions = make_predictions(COMPOSITE)
    with pytest.raises(ValueError, match="3 probability columns, not num_classes = 4"):
        report.write_predictions_csv(tmp_path / "p.csv", predictions, 4)
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,dataset,fold,seed,label,pred,p_0\nx,casme2,0,0,0,0,1.0\n")
    with pytest.raises(ValueError, match="has header"):
        report.read_predictions_csv(bad)


def test_metrics_json_is_sorted_and_numpy_safe(tmp_path):
    path = tmp_path / "metrics.json"
    report.write_metrics_json(
        path, {"b": np.float32(0.5), "a": np.arange(2), "c": {np.int64(1): 2}}
    )
    assert (
        path.read_text()
        == '{\n  "a": [\n    0,\n    1\n  ],\n  "b": 0.5,\n  "c": {\n    "1": 2\n  }\n}\n'
    )
    # A NaN metric is refused and the previous file is kept whole.
    with pytest.raises(ValueError, match=r"metrics\.b is nan"):
        report.write_metrics_json(path, {"b": float("nan")})
    assert json.loads(path.read_text())["b"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def make_history(steps=10, replicas=6):
    rng = np.random.default_rng(1)
    return {
        "step": np.arange(steps) * 50,
        "loss": np.exp(-np.arange(steps) / 4)[:, None] + 0.1 * rng.random((steps, replicas)),
        "accuracy": np.linspace(0.3, 0.9, steps)[:, None] + 0.05 * rng.random((steps, replicas)),
    }


def test_write_all_writes_the_four_files(tmp_path):
    workdir = tmp_path / "run"
    metrics = report.write_all(workdir, make_predictions(COMPOSITE), CLASSES, make_history())
    assert sorted(p.name for p in workdir.iterdir()) == [
        "confusion_matrix.png",
        "curves.png",
        "metrics.json",
        "predictions.csv",
    ]
    for name in ("confusion_matrix.png", "curves.png"):
        data = (workdir / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5_000
    written = json.loads((workdir / "metrics.json").read_text())
    assert written == metrics
    assert set(written) == {
        "uf1",
        "uar",
        "accuracy",
        "uf1_std",
        "uar_std",
        "accuracy_std",
        "per_seed",
        "seeds",
        "n_samples",
        "n_folds",
        "class_names",
        "confusion_matrix",
        "absent_classes",
        "per_dataset",
        "per_fold",
        "policy",
        "n_subjects",
        "uf1_ci",
        "uar_ci",
        "ci",
    }
    assert set(written["per_dataset"]) == {"casme2", "samm"}
    assert len(report.read_predictions_csv(workdir / "predictions.csv")) == len(COMPOSITE)


def test_crash_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    def crashing_plot(path, history):
        with open(path, "wb") as file:
            file.write(PNG_SIGNATURE)
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(figures, "plot_curves", crashing_plot)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        report.write_all(tmp_path, make_predictions(COMPOSITE), CLASSES, make_history())
    # metrics.json is written last, so a crashed run has none; no temporary is left.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix.png", "predictions.csv"]


def test_plot_inputs_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"shape \(2, 2\) but there are 3 class names"):
        figures.plot_confusion_matrix(tmp_path / "c.png", [[1, 0], [0, 1]], CLASSES, "t")
    history = make_history()
    history["loss"] = history["loss"][:, 0]
    with pytest.raises(ValueError, match=r"history\['loss'\] has shape \(10,\)"):
        figures.plot_curves(tmp_path / "c.png", history)
    with pytest.raises(ValueError, match="'step'"):
        figures.plot_curves(tmp_path / "c.png", {"loss": np.zeros((3, 2))})
