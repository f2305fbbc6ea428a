"""Export to the PyTorch MER layouts, read back the way their code reads them, and the
STSTNet authors' weights run on our preprocessing (benchmarks.official_ststnet).

One small build shaped like the MEGC 2019 composite serves every test: 68 subjects (the
composite's count, one clip each), 3 classes, small crops and DIS flow for speed.
"""

import csv
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import data_builders
from data_builders import export
from data_builders.loading import dataset_from_build
from tests.fixtures import ROOT, launch_env

SHAPED = {"num_clips": 68, "crop_size": 64, "flow_method": "dis", "num_frames": 0}
BUILD_FLAGS = [
    "synthetic_me",
    "--builder_config=megc2019_shaped",
    *(f"--overrides.{key}={value}" for key, value in SHAPED.items()),
]
WEIGHTS = ROOT / "tests" / "data" / "official_ststnet" / "weights.pth"


@pytest.fixture(scope="module")
def shaped(tmp_path_factory):
    """(data_dir, the dataset as loaded under its own protocol)."""
    data_dir = tmp_path_factory.mktemp("shaped")
    builder = data_builders.build(
        "synthetic_me", data_dir=data_dir, config="megc2019_shaped", overrides=SHAPED, workers=2
    )
    return data_dir, dataset_from_build(builder)


def _export(data_dir, export_format, out, *extra):
    argv = [*BUILD_FLAGS, f"--data_dir={data_dir}", f"--format={export_format}", f"--out={out}"]
    return export.main([*argv, *extra])


def _read_like_main_py(folder: Path, subject: str, side: str) -> tuple[list[int], dict]:
    """What the official STSTNet main.py reads of one fold: labels and images by name."""
    labels, images = [], {}
    for expression in os.listdir(folder / subject / side):
        for name in os.listdir(folder / subject / side / expression):
            labels.append(int(expression))
            images[name] = cv2.imread(str(folder / subject / side / expression / name))
    return labels, images


def test_ststnet_layout_round_trips_every_fold(shaped, tmp_path):
    data_dir, dataset = shaped
    out = tmp_path / "ststnet"
    assert _export(data_dir, "ststnet", out) == 0
    expected = export.ststnet_images(dataset["flow"], dataset["strain"])
    subjects, clips = export.sample_names(dataset)
    names = [export.image_name(s, c) for s, c in zip(subjects, clips, strict=True)]
    by_name = {name: index for index, name in enumerate(names)}
    folder = out / "norm_u_v_os"
    assert sorted(os.listdir(folder)) == sorted(set(subjects)) and len(set(subjects)) == 68
    for subject in ("sub01", "sub40"):
        test_labels, test_images = _read_like_main_py(folder, subject, "u_test")
        train_labels, train_images = _read_like_main_py(folder, subject, "u_train")
        assert len(test_images) + len(train_images) == dataset.num_samples
        for labels, images in ((test_labels, test_images), (train_labels, train_images)):
            indices = [by_name[name] for name in images]
            assert sorted(labels) == sorted(int(dataset.labels[i]) for i in indices)
            for name, image in images.items():
                assert image.shape == (28, 28, 3) and image.dtype == np.uint8
                np.testing.assert_array_equal(image, expected[by_name[name]])
        assert {subjects[by_name[name]] for name in test_images} == {subject}
    # The images are the model's own input within the PNG quantisation, u v strain
    # reversed by cv2 (BGR).
    from mer_jax.models.layers import motion_input

    maps = np.asarray(
        motion_input(
            {"flow": dataset["flow"], "strain": dataset["strain"]},
            None,
            size=28,
            use_strain=True,
            hflip=False,
        )
    )
    read_back = expected[..., ::-1].astype(np.float32) / 255.0
    assert np.abs(read_back - maps).max() <= 1 / 255 + 1e-6
    assert not list(tmp_path.glob(".*partial*"))


def test_htnet_layout_joins_as_main_htnet_reads_it(shaped, tmp_path):
    data_dir, dataset = shaped
    out = tmp_path / "htnet"
    assert _export(data_dir, "htnet", out) == 0
    with (out / export.HTNET_CSV).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == export.HTNET_COLUMNS and len(rows) == dataset.num_samples
    datasets = out / "datasets"
    whole = datasets / "STSNet_whole_norm_u_v_os"
    expected = export.ststnet_images(dataset["flow"], dataset["strain"])
    for index, row in enumerate(rows):
        # main_HTNet.py: image_name = sub + '_' + filename_o + ' .png', the key joining the
        # CSV's faces to the flow images of STSNet_whole_norm_u_v_os and three_norm_u_v_os.
        image_name = str(row["sub"]) + "_" + str(row["filename_o"]) + " .png"
        np.testing.assert_array_equal(cv2.imread(str(whole / image_name)), expected[index])
        face = cv2.imread(str(datasets / "combined_datasets_whole" / row["imagename"]))
        np.testing.assert_array_equal(face[..., ::-1], dataset["apex_image"][index])
        assert int(row["label"]) == dataset.labels[index]
    names = {str(r["sub"]) + "_" + str(r["filename_o"]) + " .png" for r in rows}
    labels, images = _read_like_main_py(datasets / "three_norm_u_v_os", rows[0]["sub"], "u_train")
    assert set(images) <= names and len(images) == dataset.num_samples - 1


def test_npz_layout_round_trips_arrays_and_metadata(shaped, tmp_path):
    data_dir, dataset = shaped
    out = tmp_path / "npz"
    assert _export(data_dir, "npz", out, "--protocol=megc2019_3class") == 0
    arrays = np.load(out / "arrays.npz")
    for name in export.NPZ_ARRAYS:
        np.testing.assert_array_equal(arrays[name], dataset[name])
        assert arrays[name].dtype == dataset[name].dtype
    with (out / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == export.METADATA_COLUMNS
    for index, row in enumerate(rows):
        assert row["sample_id"] == dataset["sample_id"][index]
        assert int(row["onset"]) == dataset["onset_index"][index]
        assert int(row["offset"]) == dataset["offset_index"][index]
        assert row["class"] == dataset.class_names[int(row["label"])]


def test_export_errors_leave_nothing_half_written(shaped, tmp_path, capsys, monkeypatch):
    data_dir, _ = shaped
    assert _export(data_dir, "npz", tmp_path / "a", "--protocol=no_such") == 2
    assert "unknown protocol 'no_such'" in capsys.readouterr().err
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep")
    assert _export(data_dir, "npz", taken) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert (taken / "mine.txt").read_text() == "keep"
    unbuilt = export.main(["casme2", f"--data_dir={tmp_path / 'empty'}", "--format=npz",
                           f"--out={tmp_path / 'b'}"])  # fmt: skip
    assert unbuilt == 2 and "manual_dir" in capsys.readouterr().err
    # A failure in the middle of writing removes the partial folder.
    calls = []

    def failing_png(image):
        calls.append(1)
        if len(calls) > 30:
            raise OSError("disk full")
        return cv2.imencode(".png", image)[1].tobytes()

    monkeypatch.setattr(export, "_png", failing_png)
    with pytest.raises(OSError, match="disk full"):
        _export(data_dir, "htnet", tmp_path / "c")
    assert not (tmp_path / "c").exists() and not list(tmp_path.glob(".c.partial*"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _fc_bias_entry(archive: zipfile.ZipFile, bias: np.ndarray) -> str:
    """The zip entry holding the storage of fc.bias (found by its bytes)."""
    entries = [
        name for name in archive.namelist()
        if "/data/" in name and archive.read(name) == bias.astype("<f4").tobytes()
    ]  # fmt: skip
    assert len(entries) == 1
    return entries[0]


def _weights_predicting(path: Path, target: int) -> None:
    """The fixture weights with fc.bias set so that the model always predicts `target`."""
    from mer_jax.models.torch_weights import read_state_dict

    with zipfile.ZipFile(WEIGHTS) as source, zipfile.ZipFile(path, "w") as archive:
        entry = _fc_bias_entry(source, read_state_dict(WEIGHTS)["fc.bias"])
        for info in source.infolist():
            data = source.read(info)
            if info.filename == entry:
                data = np.where(np.arange(3) == target, 1e4, 0.0).astype("<f4").tobytes()
            archive.writestr(info, data)


def _config_file(path: Path, data_dir: Path) -> Path:
    path.write_text(
        "from configs.protocols import megc2019_composite\n\n\n"
        "def get_config(method='ststnet'):\n"
        "    config = megc2019_composite.get_config(method)\n"
        "    config.data.name = 'synthetic_me'\n"
        "    config.data.builder_config = 'megc2019_shaped'\n"
        f"    config.data.data_dir = {str(data_dir)!r}\n"
        f"    config.data.overrides = {SHAPED!r}\n"
        "    return config\n"
    )
    return path


def test_every_subject_is_predicted_by_its_own_model(shaped, tmp_path):
    from benchmarks.official_ststnet import predict_with_official_weights, weight_names

    _, dataset = shaped
    names = weight_names(dataset, stand_in=True)
    official = [name for name, _ in names.values()]
    assert len(set(official)) == 68 and {"006", "s01", "sub26"} <= set(official)
    parts = {part for _, part in names.values()}
    assert parts == {"casme2", "samm", "smic"}
    weights = tmp_path / "weights"
    weights.mkdir()
    target = {name: index % 3 for index, name in enumerate(sorted(official))}
    for name in official:
        _weights_predicting(weights / f"{name}.pth", target[name])
    predictions = predict_with_official_weights(dataset, weights, names)
    expected = [target[names[str(subject)][0]] for subject in dataset["subject"]]
    np.testing.assert_array_equal(predictions, expected)


def test_official_ststnet_command_runs_on_the_stand_in(shaped, tmp_path):
    data_dir, dataset = shaped
    weights = tmp_path / "weights"
    weights.mkdir()
    from benchmarks.official_ststnet import weight_names

    for name, _ in weight_names(dataset, stand_in=True).values():
        shutil.copy(WEIGHTS, weights / f"{name}.pth")
    shutil.copy(WEIGHTS, weights / "extra.pth")
    config = _config_file(tmp_path / "config.py", data_dir)
    command = [
        sys.executable, "-m", "benchmarks.official_ststnet", f"--config={config}:ststnet",
        f"--weights={weights}", "--composite_stand_in",
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=launch_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "68 subjects, each predicted by its own model" in done.stdout
    assert "matching no subject of the build (1): extra.pth" in done.stdout
    rows = [line.split("|")[1:-1] for line in done.stdout.splitlines() if line.startswith("| ")]
    by_row = {cells[0].strip(): cells for cells in rows[1:]}
    assert set(by_row) == {"casme2", "samm", "smic", "all"}
    assert int(by_row["all"][2]) == dataset.num_samples
    assert by_row["all"][5].strip() == "0.7209"
    # A subject without its weight file is named, not skipped.
    (weights / "s05.pth").unlink()
    done = subprocess.run(
        command, cwd=ROOT, env=launch_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "(s05.pth)" in done.stderr


def test_composite_subjects_are_named_by_their_release_folders():
    from benchmarks.official_ststnet import CLASS_NAMES, weight_names
    from mer_jax.data.dataset import MERDataset

    subjects = np.array(["casme2/sub01", "samm/006", "smic/s01", "casme2/sub01"])
    dataset = MERDataset(
        "megc2019",
        CLASS_NAMES,
        {"subject": subjects, "dataset": np.array(["casme2", "samm", "smic", "casme2"])},
    )
    assert weight_names(dataset, stand_in=False) == {
        "casme2/sub01": ("sub01", "casme2"),
        "samm/006": ("006", "samm"),
        "smic/s01": ("s01", "smic"),
    }


def test_composite_exports_under_htnets_own_names_and_runs_the_authors_models(tmp_path):
    """The real path on a fake composite release: the names HTNet's repository ships
    (datasets/three_norm_u_v_os/sub01/u_test/0/sub01_EP19_05f .png, ...) and the 68
    weight files matched by release folder, without a stand-in."""
    from benchmarks.official_ststnet import predict_with_official_weights, weight_names
    from data_builders.megc2019 import COMPOSITE_LIST
    from tests import fake_releases

    fake_releases.make_megc2019(tmp_path / "megc", COMPOSITE_LIST)
    small = {"crop_size": 32, "flow_size": 8, "flow_method": "dis", "num_frames": 0}
    flags = [
        "megc2019", f"--manual_dir={tmp_path / 'megc'}", f"--data_dir={tmp_path / 'data'}",
        *(f"--overrides.{key}={value}" for key, value in small.items()),
    ]  # fmt: skip
    assert export.main([*flags, "--format=htnet", f"--out={tmp_path / 'htnet'}"]) == 0
    datasets = tmp_path / "htnet" / "datasets"
    for shipped in (
        "three_norm_u_v_os/sub01/u_test/0/sub01_EP19_05f .png",
        "three_norm_u_v_os/sub01/u_test/1/sub01_EP02_01f .png",
        "three_norm_u_v_os/sub01/u_train/0/006_006_1_2 .png",
        "three_norm_u_v_os/sub01/u_train/0/s01_s01_ne_01 .png",
        "STSNet_whole_norm_u_v_os/006_006_1_4 .png",
        "STSNet_whole_norm_u_v_os/s03_s03_po_11 .png",
    ):
        assert cv2.imread(str(datasets / shipped)).shape == (28, 28, 3), shipped
    with (tmp_path / "htnet" / export.HTNET_CSV).open(newline="") as handle:
        exported = [(r["dataset"], r["sub"], r["filename_o"], r["label"]) for r in csv.DictReader(handle)]  # noqa: E501
    with COMPOSITE_LIST.open(newline="") as handle:
        listed = [(r["dataset"], r["subject"], r["filename"], r["label"]) for r in csv.DictReader(handle)]  # noqa: E501
    samm_folder = {s: s if not s.isdigit() else f"{int(s):03d}" for _, s, _, _ in listed}
    assert sorted(exported) == sorted((d, samm_folder[s], f, lab) for d, s, f, lab in listed)

    builder = data_builders.build(
        "megc2019", data_dir=tmp_path / "data", manual_dir=tmp_path / "megc", overrides=small
    )
    dataset = dataset_from_build(builder)
    names = weight_names(dataset, stand_in=False)
    assert len(names) == 68 and names["samm/006"] == ("006", "samm")
    weights = tmp_path / "weights"
    weights.mkdir()
    for name, _ in names.values():
        shutil.copy(WEIGHTS, weights / f"{name}.pth")
    predictions = predict_with_official_weights(dataset, weights, names)
    assert predictions.shape == (442,) and set(predictions.tolist()) <= {0, 1, 2}
