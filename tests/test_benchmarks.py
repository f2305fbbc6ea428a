"""The benchmarks: the linear probe's classifier learns a separable input and never sees test
labels; the results table's rows are valid configs in a workable order; the long-video
preprocessing benchmark measures a few seconds of video."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import spotting_preprocess
from benchmarks.probes import nested_ridge_loso, ridge_loso
from mer_jax.data import loso


def test_ridge_loso_learns_and_never_reads_the_test_subjects_labels():
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(6)], 10)
    labels = np.tile(np.arange(5), 12)
    # The class as a one-hot pattern on 20 features of noise: linearly separable.
    features = rng.normal(0, 0.3, (60, 4, 5))
    features[np.arange(60), 0, labels] += 3.0
    folds = loso.leave_one_group_out(subjects)
    preds = ridge_loso(features, labels, folds, 5, penalty=0.1)
    assert np.mean(preds == labels) == 1.0
    # Shuffling the held-out subject's labels cannot change its own predictions.
    shuffled = labels.copy()
    shuffled[subjects == "s0"] = rng.permutation(shuffled[subjects == "s0"])
    again = ridge_loso(features, shuffled, folds, 5, penalty=0.1)
    np.testing.assert_array_equal(again[subjects == "s0"], preds[subjects == "s0"])


def test_nested_ridge_chooses_the_penalty_without_the_test_subject():
    rng = np.random.default_rng(1)
    subjects = np.repeat([f"s{i}" for i in range(6)], 10)
    labels = np.tile(np.arange(5), 12)
    features = rng.normal(0, 1.0, (60, 30))
    features[np.arange(60), labels] += 1.0
    folds = loso.leave_one_group_out(subjects)
    penalties = [0.01, 1.0, 100.0]
    preds, chosen = nested_ridge_loso(features, labels, subjects, folds, 5, penalties)
    assert len(chosen) == 6 and set(chosen) <= set(penalties)
    # The held-out subject's labels and features are never read before it is predicted:
    # poisoning another fold's test subject changes nothing of s0's choice or predictions.
    poisoned_labels, poisoned = labels.copy(), features.copy()
    poisoned_labels[subjects == "s0"] = 0
    poisoned[subjects == "s0"] = 1e3
    _, chosen_again = nested_ridge_loso(poisoned, poisoned_labels, subjects, folds, 5, penalties)
    assert chosen_again[0] == chosen[0]
    np.testing.assert_array_equal(
        nested_ridge_loso(features, poisoned_labels, subjects, folds, 5, penalties)[0][
            subjects == "s0"
        ],
        preds[subjects == "s0"],
    )


def test_every_results_table_row_is_a_valid_config_and_ablations_follow_their_base(tmp_path):
    """The table's rows validate (nothing is built), a base row comes before its
    ablations, and an ablation of a nested row reuses its base row's choices (same grid)."""
    from absl import flags

    from benchmarks import results_table
    from mer_jax.train import validation

    flags.FLAGS(["results_table"])  # the table's default seeds and inner folds
    seen = set()
    for row in results_table.ROWS:
        config = results_table.row_config(row, tmp_path)
        assert config.seeds == (0, 1, 2)
        if row.ablates:
            assert row.ablates in seen, row.name
            base = next(r for r in results_table.ROWS if r.name == row.ablates)
            assert row.grid == base.grid, row.name
        if row.grid and row.ablates:
            assert config.tune.choices_from == str(tmp_path / results_table.slug(row.ablates))
            config.tune.choices_from = None  # its run does not exist here
        else:
            assert config.tune.choices_from is None
        assert bool(len(config.tune.grid)) == bool(row.grid), row.name
        if row.pretrain is not None:
            assert config.init_from == str(tmp_path / f"pretraining_{row.pretrain}")
            Path(config.init_from).mkdir(exist_ok=True)  # validation wants the folder
        assert validation.problems(config) == [], row.name
        seen.add(row.name)
    for name, changes in results_table.PRETRAININGS.items():
        assert validation.problems(results_table._config("ma2mi_pretrain", changes)) == [], name


def test_a_finished_row_is_reread_only_as_the_run_its_definition_describes(tmp_path):
    """A row whose config has moved since it trained (a pin left out) is refused, not
    re-labelled with the new setting; a trial keeps its method's pins under its change."""
    from absl import flags

    from benchmarks import claims, results_table
    from mer_jax.errors import UserError

    flags.FLAGS(["results_table"])
    row = results_table.ROWS[0]
    workdir = tmp_path / results_table.slug(row.name)
    (workdir / "checkpoints" / "chunk_000" / "1").mkdir(parents=True)
    trained = results_table.row_config(row, tmp_path)
    trained.train.learning_rate *= 3
    (workdir / "config.json").write_text(trained.to_json())
    (workdir / "metrics.json").write_text("{}")
    with pytest.raises(UserError, match="train.learning_rate"):
        results_table.run_row(row, tmp_path)
    flatten = dict(claims._row("FR flatten", "fr", (("model.readout", "flatten"),)).changes)
    assert flatten == {"model.readout": "flatten", "train.learning_rate": 3e-3}


def test_a_nested_row_counts_the_folds_that_chose_each_value(tmp_path):
    from absl import flags

    from benchmarks import results_table

    flags.FLAGS(["results_table"])
    row = next(r for r in results_table.ROWS if r.name == "DeRe-GRL")
    workdir = tmp_path / results_table.slug(row.name)
    workdir.mkdir()
    grid = {"model.dropout": [0.0, 0.3], "model.hflip": [False, True]}
    (workdir / "metrics.json").write_text(
        json.dumps({"selection": "nested", "tuning": {"grid": grid}})
    )
    (workdir / "predictions.csv").write_text("")
    # Points in order (dropout, hflip): 0 (0.0, False), 1 (0.0, True), 2 (0.3, False), ...
    chosen = {"s1": 1, "s2": 1, "s3": 2}
    lines = ["test_subject,grid_point,chosen"] + [
        f"{subject},{point},{point == chosen[subject]}" for subject in chosen for point in range(4)
    ]
    (workdir / "tuning.csv").write_text("\n".join(lines) + "\n")
    assert results_table.chosen_counts(row, tmp_path) == (
        "model.dropout 0.0 x2, 0.3 x1; model.hflip False x1, True x2 (of 3 folds)"
    )


def test_every_claim_and_trial_names_a_run_and_pending_ones_say_how_to_train_them(tmp_path):
    from absl import flags

    from benchmarks import claims

    flags.FLAGS(["claims"])  # the table's default seeds
    for claim in claims.CLAIMS:
        claims.workdir_of(claim.first, tmp_path, tmp_path)
        claims.workdir_of(claim.second, tmp_path, tmp_path)
    for trial in claims.TRIALS:
        claims.workdir_of(trial.against, tmp_path, tmp_path)
    # A trained trial's per-class F1 is shown, whether or not its pair is trained.
    flip = tmp_path / "trials" / "ststnet_flip"
    flip.mkdir(parents=True)
    finished = {"class_names": ["a", "b"], "confusion_matrix": [[3, 1], [0, 0]]}
    (flip / "metrics.json").write_text(json.dumps(finished))
    text = claims.tables(tmp_path / "rows", tmp_path / "trials")
    assert "| STSTNet flip | 0.86 (4/3) | absent (0/1) |" in text
    assert "python -m benchmarks.results_table" in text and "--only ststnet_scale" in text
    # A trial's command trains it and then reads its base from the same rows.
    rows, trials = tmp_path / "rows", tmp_path / "trials"
    assert f"claims --root {rows} --trials {trials} --only ststnet_scale" in text
    words = ("up", "down", "neither")
    assert claims.verdict({"interval": [0.01, 0.2]}, words) == "up"
    assert claims.verdict({"interval": [-0.2, -0.01]}, words) == "down"
    assert claims.verdict({"interval": [-0.01, 0.2]}, words) == "neither"


def test_spotting_preprocess_times_the_extraction_of_a_few_seconds(tmp_path):
    row = spotting_preprocess.measure(3 / 60, 64, tmp_path)
    assert row["frames"] == 600 and row["sampled"] == 38 and row["positions"] == 36
    assert row["valid"] == 36 and row["notes"] == []
    assert row["frames_per_s"] > 0 and row["peak_rss_mb"] >= row["rss_before_mb"] > 0
    assert "| 600 |" in spotting_preprocess.markdown(row)


def test_spotting_table_runs_a_row_once_and_tables_its_three_types(tmp_path):
    import data_builders
    from benchmarks import spotting_table
    from tests import fixtures

    tiny = {"num_subjects": 2, "clips_per_subject": 1, "frame_size": 64, "crop_size": 32, "grid": 4}
    data_builders.build("synthetic_lv", data_dir=tmp_path / "data", overrides=tiny, workers=1)
    row = spotting_table.ROWS[0]
    config = fixtures.tiny_config(tmp_path / "data", {"data.overrides": tiny}, row.config)
    found = spotting_table.run_row(row, tmp_path / "table", config)
    assert found["build"].startswith("synthetic_lv/") and found["wall_s"] >= 0
    provenance = (tmp_path / "table" / row.name / spotting_table.ROW_JSON).read_text()
    # A finished row is re-read, not run again.
    again = spotting_table.run_row(row, tmp_path / "table", config)
    assert again["spotting"] == found["spotting"]
    assert (tmp_path / "table" / row.name / spotting_table.ROW_JSON).read_text() == provenance
    table = spotting_table.markdown([found])
    lines = [line for line in table.splitlines() if line.startswith(f"| {row.name} |")]
    assert [line.split(" | ")[1] for line in lines] == ["overall", "micro", "macro"]
    overall = found["spotting"]["overall"]
    assert f"| {overall['tp']} | {overall['fp']} | {overall['fn']} |" in lines[0]
