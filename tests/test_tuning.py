"""Numbers a reviewer accepts: nested LOSO in the stacked engine, bootstrap intervals and
paired comparisons."""

import dataclasses
import json
import shutil

import fixtures
import numpy as np
import pytest

from mer_jax.data import loso
from mer_jax.errors import UserError
from mer_jax.evaluate import bootstrap, compare
from mer_jax.evaluate.metrics import classification_metrics
from mer_jax.train import engine

synthetic_data_dir = fixtures.synthetic_data_dir

# Stacked (one compile per stage), one seed, a batch that fits an inner fold's training
# set (two of the four tiny subjects).
SETTINGS = {
    "engine.mode": "stacked",
    "seeds": (0,),
    "train.steps": 20,
    "train.batch_size": 4,
    "train.checkpoint_every": 20,
}
GRID = {"train": {"learning_rate": (1e-3, 1e-2)}}


def config_with(data_dir, grid=None):
    config = fixtures.tiny_config(data_dir, SETTINGS)
    if grid is not None:
        config.tune.grid = grid
    return config


def run(config, workdir, dataset=None):
    import data_builders

    return engine.LosoRun(config, workdir, dataset or data_builders.load(config.data)).train()


@pytest.fixture(scope="module")
def runs(synthetic_data_dir, tmp_path_factory):
    """A plain run, a nested run over one grid point, and one over two points."""
    root = tmp_path_factory.mktemp("tuning")
    run(config_with(synthetic_data_dir), root / "plain")
    run(config_with(synthetic_data_dir, {"train": {"learning_rate": (1e-3,)}}), root / "one")
    run(config_with(synthetic_data_dir, GRID), root / "two")
    return root


def test_a_grid_of_one_point_is_the_plain_run_bit_for_bit(runs):
    plain, one = runs / "plain", runs / "one"
    assert (plain / "predictions.csv").read_bytes() == (one / "predictions.csv").read_bytes()
    a, b = (json.loads((w / "metrics.json").read_text()) for w in (plain, one))
    assert a.pop("selection") == "fixed" and b.pop("selection") == "nested"
    b.pop("tuning")
    assert a == b


def test_nested_selection_outputs(runs):
    metrics = json.loads((runs / "two" / "metrics.json").read_text())
    assert metrics["selection"] == "nested"
    chosen = metrics["tuning"]["chosen"]
    assert len(chosen) == fixtures.NUM_SUBJECTS
    assert set(chosen.values()) <= {"train.learning_rate=0.001", "train.learning_rate=0.01"}
    rows = (runs / "two" / "tuning.csv").read_text().splitlines()
    assert rows[0].split(",")[:4] == ["outer_fold", "test_subject", "grid_point",
                                      "train.learning_rate"]
    # Every (outer fold, grid point) scored; one point chosen per fold.
    assert len(rows) == 1 + fixtures.NUM_SUBJECTS * 2
    assert sum(row.endswith(",True") for row in rows[1:]) == fixtures.NUM_SUBJECTS


def test_nested_evaluation_from_checkpoints_reproduces_the_outputs(
    runs, synthetic_data_dir, tmp_path
):
    import data_builders

    workdir = tmp_path / "two"
    shutil.copytree(runs / "two", workdir)
    before = {n: (workdir / n).read_bytes() for n in ("predictions.csv", "tuning.csv")}
    for name in before:
        (workdir / name).unlink()
    config = config_with(synthetic_data_dir, GRID)
    engine.LosoRun(config, workdir, data_builders.load(config.data)).evaluate()
    for name, data in before.items():
        assert (workdir / name).read_bytes() == data, name


def test_the_outer_test_subject_never_enters_an_inner_run(runs, synthetic_data_dir, tmp_path):
    """Poison the labels and inputs of fold 0's test subject: fold 0's inner scores and
    choice do not move (other folds train on that subject, so theirs may)."""
    import data_builders

    config = config_with(synthetic_data_dir, GRID)
    dataset = data_builders.load(config.data)
    folds = loso.make_folds("loso", subjects=dataset["subject"], datasets=dataset["dataset"])
    poisoned = dict(dataset.examples)
    target = folds.test_mask[0]
    poisoned["label"] = np.where(target, (dataset.labels + 1) % 5, dataset.labels)
    rng = np.random.default_rng(0)
    flow = poisoned["flow"].copy()
    flow[target] = rng.normal(0, 50, flow[target].shape).astype(flow.dtype)
    poisoned["flow"] = flow
    run(config, tmp_path / "poisoned", dataclasses.replace(dataset, examples=poisoned))

    def fold_rows(workdir):
        return [r for r in (workdir / "tuning.csv").read_text().splitlines() if r.startswith("0,")]

    assert fold_rows(tmp_path / "poisoned") == fold_rows(runs / "two")


def test_inner_folds_keep_the_outer_test_subject_out():
    subjects = np.array([f"s{i}" for i in range(6) for _ in range(3)])
    outer = loso.make_folds("loso", subjects=subjects, datasets=np.array(["d"] * len(subjects)))
    for k in (0, 2, 3):
        inner = loso.inner_folds(outer, 2, subjects, k)
        assert inner.num_folds == (5 if k == 0 else k)
        assert not (inner.train_mask | inner.test_mask)[:, subjects == "s2"].any()
        # Every outer training sample is tested exactly once by the inner folds.
        np.testing.assert_array_equal(inner.test_mask.sum(0), (subjects != "s2").astype(int))
    with pytest.raises(UserError, match="inner_folds=9"):
        loso.inner_folds(outer, 2, subjects, 9)


# -- the bootstrap ------------------------------------------------------------------------


def test_bootstrap_scores_match_the_reported_metrics():
    rng = np.random.default_rng(1)
    labels, preds = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    labels[labels == 3] = 2  # an absent class
    subjects = rng.integers(0, 10, 300).astype(str)
    seeds = np.zeros(300, int)
    counts, _, _ = bootstrap.subject_confusions(subjects, seeds, labels, preds, 4)
    ours = bootstrap.scores(counts.sum(0)[0])
    reference = classification_metrics(labels, preds, 4)
    assert ours["uf1"] == pytest.approx(reference["uf1"]) and ours["uar"] == pytest.approx(
        reference["uar"]
    )


def _simulated(num_subjects, rng, accuracy=0.6, per_subject=10, classes=3):
    labels = rng.integers(0, classes, num_subjects * per_subject)
    correct = rng.random(len(labels)) < accuracy
    preds = np.where(correct, labels, (labels + rng.integers(1, classes, len(labels))) % classes)
    subjects = np.repeat(np.arange(num_subjects).astype(str), per_subject)
    return subjects, labels, preds


def test_the_interval_covers_the_truth_about_95_percent_of_the_time_and_shrinks():
    rng = np.random.default_rng(2)
    # The classifier's true UF1: on a very large population.
    _, big_labels, big_preds = _simulated(20000, rng)
    truth = classification_metrics(big_labels, big_preds, 3)["uf1"]
    covered, widths = 0, {}
    repeats = 200
    for repeat in range(repeats):
        subjects, labels, preds = _simulated(20, rng)
        low, high = bootstrap.interval(
            subjects, np.zeros(len(labels), int), labels, preds, 3, resamples=500, seed=repeat
        )["uf1"]
        covered += low <= truth <= high
    for count in (10, 40):
        subjects, labels, preds = _simulated(count, rng)
        low, high = bootstrap.interval(subjects, np.zeros(len(labels), int), labels, preds, 3)[
            "uf1"
        ]
        widths[count] = high - low
    assert 0.88 <= covered / repeats <= 0.99, covered / repeats
    assert widths[40] < widths[10]


# -- paired comparison -------------------------------------------------------------------


def test_compare_a_run_with_itself_is_exactly_zero(runs):
    result = compare.compare(runs / "plain", runs / "plain")
    for name in ("uf1", "uar"):
        assert result[name]["difference"] == 0.0
        assert result[name]["interval"] == [0.0, 0.0]


def test_compare_pairs_two_runs_on_the_same_splits(runs):
    result = compare.compare(runs / "two", runs / "plain")
    assert result["subjects"] == fixtures.NUM_SUBJECTS
    low, high = result["uf1"]["interval"]
    assert low <= result["uf1"]["difference"] <= high


def test_compare_refuses_mismatched_runs(runs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(runs / "plain", other)
    lines = (other / "predictions.csv").read_text().splitlines()
    (other / "predictions.csv").write_text("\n".join(lines[:-1]) + "\n")  # a sample fewer
    with pytest.raises(UserError, match="other samples"):
        compare.compare(runs / "plain", other)
    assert compare.main([str(runs / "plain"), str(tmp_path / "nowhere")]) == 2


def test_a_nested_workdir_predicts_with_its_outer_models(runs, synthetic_data_dir):
    """`--mode predict` averages the models that predicted the outer test subjects: under
    nested selection, each outer fold's model of its chosen grid point."""
    import data_builders
    from mer_jax import workdir

    ensemble = workdir.Ensemble(runs / "two")
    assert sorted(ensemble.replicas) == sorted(
        workdir.Replica(f, 0) for f in range(fixtures.NUM_SUBJECTS)
    )
    dataset = data_builders.load(config_with(synthetic_data_dir, GRID).data)
    outputs = ensemble.predict({name: dataset[name][:2] for name in ensemble.inputs})
    assert outputs["probabilities"].shape == (2, len(dataset.class_names))
    np.testing.assert_allclose(outputs["probabilities"].sum(-1), 1.0, rtol=1e-5)


def test_reusing_a_runs_choices_retrains_its_outer_runs_bit_for_bit(
    runs, synthetic_data_dir, tmp_path
):
    """tune.choices_from trains no inner run: the outer runs of the choices it reads, the
    same as the source run's own (the ablation rows of the results table use this)."""
    config = config_with(synthetic_data_dir, GRID)
    config.tune.choices_from = str(runs / "two")
    run(config, tmp_path / "reused")
    reused, source = tmp_path / "reused", runs / "two"
    assert (reused / "predictions.csv").read_bytes() == (source / "predictions.csv").read_bytes()
    assert not (reused / "tuning.csv").exists()
    a, b = (json.loads((w / "metrics.json").read_text())["tuning"] for w in (reused, source))
    assert a["chosen"] == b["chosen"] and a["grid"] == b["grid"]
    assert a["choices_from"] == str(source) and "inner_folds" not in a
    # Only the outer runs trained: one replica per (fold, seed).
    assert a["replicas"] == fixtures.NUM_SUBJECTS < b["replicas"]


def test_choices_from_refuses_runs_it_cannot_reuse(runs, synthetic_data_dir, tmp_path):
    import data_builders
    from mer_jax.train import validation

    def problems(choices_from, grid=GRID):
        config = config_with(synthetic_data_dir, grid)
        config.tune.choices_from = str(choices_from)
        return validation.problems(config)

    assert "needs the grid" in " ".join(problems(runs / "two", grid={}))
    assert "holds no finished run" in " ".join(problems(tmp_path / "nowhere"))
    assert "not a nested run" in " ".join(problems(runs / "plain"))
    other_grid = {"train": {"learning_rate": (1e-3, 3e-2)}}
    assert "chose over the grid" in " ".join(problems(runs / "two", other_grid))
    assert problems(runs / "two") == []

    # Other data: a subject fewer (other outer folds), or a sample fewer (other samples).
    config = config_with(synthetic_data_dir, GRID)
    config.tune.choices_from = str(runs / "two")
    dataset = data_builders.load(config.data)
    subjects = dataset["subject"]
    for keep, message in (
        (subjects != subjects[-1], "other data or another split"),
        (np.arange(len(subjects)) != 0, "other samples or folds"),
    ):
        subset = {name: values[keep] for name, values in dataset.examples.items()}
        other = dataclasses.replace(dataset, examples=subset)
        with pytest.raises(UserError, match=message):
            engine.LosoRun(config, tmp_path / "other", other)
