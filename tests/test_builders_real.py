"""The licensed-database builders, each built from a fake release in its real layout."""

import os
import shutil
from collections import Counter
from pathlib import Path

import fake_releases
import ml_collections
import numpy as np
import pytest

import data_builders
from data_builders.casme2 import Builder as Casme2Builder
from data_builders.errata import errata_digest, read_errata
from data_builders.megc2019 import COMPOSITE_LIST
from mer_jax.data.action_units import AU_LIST
from mer_jax.data.dataset import MERDataset
from mer_jax.errors import UserError

CROP, FLOW = 64, 16
OVERRIDES = {"crop_size": CROP, "flow_size": FLOW, "flow_method": "dis"}
# 442 clips: tiny crops and no stored T frames keep the composite build to seconds.
COMPOSITE_OVERRIDES = {"crop_size": 32, "flow_size": 8, "flow_method": "dis", "num_frames": 0}
MAKERS = {
    "casme2": fake_releases.make_casme2,
    "samm": fake_releases.make_samm,
    "smic": fake_releases.make_smic,
    "casme3": fake_releases.make_casme3,
    "mmew": fake_releases.make_mmew,
}
FPS = {"casme2": 200, "samm": 200, "smic": 100, "casme3": 30, "mmew": 90}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (examples, builder, expected, release folder) for every fake release."""
    root = tmp_path_factory.mktemp("real")
    data_dir = root / "data"
    result = {}
    for name, make in MAKERS.items():
        expected = make(root / name)
        # SMIC with two worker processes: the parallel path.
        builder = data_builders.build(
            name,
            data_dir=data_dir,
            manual_dir=root / name,
            overrides=OVERRIDES,
            workers=2 if name == "smic" else 1,
        )
        result[name] = (data_builders.load_examples(builder), builder, expected, root / name)
    return result


@pytest.mark.parametrize("name", list(MAKERS))
def test_build_reads_back_counts_labels_and_fields(built, name):
    examples, builder, expected, _ = built[name]
    n = expected.samples
    assert len(examples["sample_id"]) == n
    assert set(examples["subject"]) == expected.subjects
    assert dict(zip(examples["sample_id"], examples["label"].tolist(), strict=True)) == (
        expected.labels
    )
    assert set(examples["dataset"]) == {name} and (examples["fps"] == FPS[name]).all()
    assert examples["onset_image"].shape == (n, CROP, CROP, 3)
    assert examples["onset_image"].dtype == np.uint8
    assert examples["flow"].shape == (n, FLOW, FLOW, 2) and examples["flow"].dtype == np.float16
    assert examples["landmarks_onset"].shape == (n, 68, 2)
    assert examples["action_units"].shape == (n, len(AU_LIST))
    # Every fake AU cell is coded and readable but SMIC's (no AU coding) and one blank
    # CAS(ME)^3 cell.
    unknown = {"smic": n, "casme3": 1}.get(name, 0)
    assert int((examples["action_units_known"] == 0).sum()) == unknown
    assert (examples["onset_index"] <= examples["apex_index"]).all()
    assert (examples["apex_index"] <= examples["offset_index"]).all()
    assert builder.info.metadata["protocol"] == builder.PROTOCOL
    # Every skipped, fixed or gap row is kept with the build.
    notes = builder.info.metadata["release_notes"]
    kinds = Counter(note.split(":", 1)[0] for note in notes)
    assert (kinds["skipped"], kinds["fixed"], kinds["gap"]) == (
        expected.skipped,
        expected.fixed,
        expected.gaps,
    )
    assert np.isfinite(examples["flow"].astype(np.float32)).all()
    if name != "casme3":  # CAS(ME)^3 clips are cut from one motion over the whole task
        # The fake faces move right by up to 1 px at the apex (SAMM: up-right, see below).
        assert examples["flow"][..., 0].astype(np.float32).mean() > 0.2


def test_samm_grayscale_faces_found_by_dlib(built):
    examples, _, _, _ = built["samm"]
    onset = examples["onset_image"].astype(np.int16)
    assert (onset[..., 0] == onset[..., 1]).all() and (onset[..., 1] == onset[..., 2]).all()
    eyes = examples["landmarks_onset"][:, 36:42].mean(axis=1)
    np.testing.assert_allclose(eyes, np.tile([0.3 * CROP, 0.4 * CROP], (3, 1)), atol=0.01)
    flow = examples["flow"][:, 3:-3, 3:-3].astype(np.float32).mean(axis=(1, 2))
    assert (flow[:, 0] > 0.3).all() and (flow[:, 1] < -0.1).all()  # up and to the right
    no_apex = list(examples["sample_id"]).index("samm/007/007_3_1/990")
    assert not examples["apex_annotated"][no_apex] and examples["apex_index"][no_apex] == 991


def test_casme2_action_units_and_apex_fallback(built):
    examples, _, _, _ = built["casme2"]
    by_id = {sample_id: i for i, sample_id in enumerate(examples["sample_id"])}
    disgust = by_id["casme2/sub01/EP02_01f/46"]
    assert examples["action_units_raw"][disgust] == "R4+L10"
    assert [AU_LIST[i] for i in np.flatnonzero(examples["action_units"][disgust])] == [4, 10]
    no_apex = by_id["casme2/sub01/EP03_02/8"]
    assert not examples["apex_annotated"][no_apex] and examples["apex_index"][no_apex] == 11
    assert examples["emotion"][by_id["casme2/sub02/EP05_02/30"]] == "fear"


def test_cropped_releases_skip_detection(built, tmp_path):
    _, _, _, casme2_root = built["casme2"]
    _, _, _, smic_root = built["smic"]
    for name, root in (("casme2", casme2_root), ("smic", smic_root)):
        builder = data_builders.build(
            name,
            data_dir=tmp_path,
            manual_dir=root,
            config="cropped",
            overrides=OVERRIDES,
            workers=1,
        )
        examples = data_builders.load_examples(builder)
        assert builder.builder_config.release == "cropped"
        # The texture frames hold no face: only a release marked cropped builds at all.
        assert len(examples["sample_id"]) == 5 if name == "casme2" else 3


def test_composite_build_is_the_official_list(tmp_path):
    fake_releases.make_megc2019(tmp_path / "megc", COMPOSITE_LIST)
    builder = data_builders.build(
        "megc2019",
        data_dir=tmp_path / "data",
        manual_dir=tmp_path / "megc",
        overrides=COMPOSITE_OVERRIDES,
        workers=1,
    )
    examples = data_builders.load_examples(builder)
    labels = Counter(examples["label"].tolist())
    assert len(examples["sample_id"]) == 442
    assert [labels[0], labels[1], labels[2]] == [250, 109, 83]
    assert len(set(examples["subject"])) == 68
    assert Counter(examples["dataset"].tolist()) == {"casme2": 145, "samm": 133, "smic": 164}
    assert "casme2/sub04/EP12_01f/1" not in set(examples["sample_id"])
    assert builder.info.metadata["class_names"] == ["negative", "positive", "surprise"]


def test_failed_clips_are_skipped_by_name_and_fail_a_strict_build(tmp_path):
    root = tmp_path / "casme2"
    fake_releases.make_casme2(root)
    broken = root / "CASME2_RAW_selected" / "sub01" / "EP02_01f" / "img49.jpg"
    broken.write_bytes(b"not a jpeg")
    (root / "landmarks" / "sub01" / "EP03_02.csv").unlink()  # texture only: no face
    kwargs = {"data_dir": tmp_path / "data", "manual_dir": root, "overrides": OVERRIDES}
    strict = data_builders.ReadOptions(strict=True)
    with pytest.raises(UserError) as error:
        data_builders.build("casme2", workers=1, reading=strict, **kwargs)
    message = str(error.value)
    assert "1 row(s) or clip(s) of casme2 were skipped; a strict build" in message
    # The skipped row's clip, whole: now only the two broken clips fail.
    fake_releases.write_clip(
        root / "CASME2_RAW_selected" / "sub03" / "EP13_01",
        list(range(20, 26)),
        "img{}.jpg",
        apex=22,
        sidecar=root / "landmarks" / "sub03" / "EP13_01.csv",
    )
    with pytest.raises(UserError) as error:
        data_builders.build("casme2", workers=1, reading=strict, **kwargs)
    message = str(error.value)
    assert "2 of 6 clips could not be built; a strict build" in message
    assert (
        "CASME2-coding-20190701.xlsx row 3 clip sub01/EP02_01f: clip casme2/sub01/EP02_01f/46: "
        "cannot read" in message
    )
    assert str(broken) in message
    assert "row 4 clip sub01/EP03_02: clip casme2/sub01/EP03_02/8: no face found" in message
    assert str(root / "landmarks" / "sub01" / "EP03_02.csv") in message  # where a sidecar goes
    assert not list((tmp_path / "data").rglob("dataset_info.json"))

    # Not strict: the other clips are built, the two named in the build's metadata.
    data_builders.build("casme2", workers=1, **kwargs)
    builder = data_builders.get_builder("casme2", data_dir=tmp_path / "data", overrides=OVERRIDES)
    assert builder.is_prepared()  # a fresh builder reads what the build wrote
    assert builder.info.splits["train"].num_examples == 4
    skipped = builder.info.metadata["skipped_clips"]
    assert [note.split(" clip ")[1].split(":")[0] for note in skipped] == [
        "sub01/EP02_01f",
        "sub01/EP03_02",
    ]
    with pytest.raises(UserError, match=r"the cached build .* skipped 2 row\(s\) or clip\(s\)"):
        data_builders.build("casme2", workers=1, reading=strict, **kwargs)


def test_every_clip_failing_writes_nothing(tmp_path):
    root = tmp_path / "casme2"
    fake_releases.make_casme2(root)
    shutil.rmtree(root / "landmarks")  # texture frames only: no face anywhere
    kwargs = {"data_dir": tmp_path / "data", "manual_dir": root, "overrides": OVERRIDES}
    with pytest.raises(UserError, match="5 of 5 clips could not be built; nothing was written"):
        data_builders.build("casme2", workers=1, **kwargs)
    builder = data_builders.get_builder("casme2", data_dir=tmp_path / "data", overrides=OVERRIDES)
    assert not builder.is_prepared()
    with pytest.raises(UserError, match="not built in"):
        data_builders.load_examples(builder)


def casme2_data_config(built, **changes):
    """The `config.data` of a run on the casme2 build above."""
    _, builder, _, root = built["casme2"]
    fields = {
        "name": "casme2",
        "data_dir": str(builder.data_dir_root),
        "manual_dir": str(root),
        "builder_config": None,
        "overrides": OVERRIDES,
        "protocol": None,
    }
    return ml_collections.ConfigDict({**fields, **changes})


@pytest.fixture
def no_rebuild(monkeypatch):
    """Fails a test that would build again instead of reading the build above."""
    monkeypatch.setattr(
        Casme2Builder, "download_and_prepare", lambda *a, **k: pytest.fail("rebuilt")
    )


def test_configs_name_a_real_dataset(built, no_rebuild):
    dataset = data_builders.load(casme2_data_config(built))  # found, not rebuilt
    assert isinstance(dataset, MERDataset)
    assert dataset.num_samples == 4  # fear is excluded by casme2_5class
    assert dataset.class_names[0] == "happiness"
    examples, builder, _, _ = built["casme2"]
    keep = examples["label"] >= 0
    assert set(dataset.examples) == set(examples)
    for key, values in dataset.examples.items():
        np.testing.assert_array_equal(values, examples[key][keep], err_msg=key)
    # The build's settings travel with the samples, as a plain dict.
    assert type(dataset.metadata) is dict
    build = f"casme2/{builder.builder_config.name}:{builder.info.version}"
    assert dataset.metadata == {**builder.info.metadata, "build": build}
    assert (dataset.metadata["crop_size"], dataset.metadata["flow_size"]) == (CROP, FLOW)
    assert dataset.metadata["num_frames"] == 16
    assert dataset.metadata["action_units"] == list(AU_LIST)
    assert dataset.metadata["class_names"] == list(dataset.class_names)


def test_load_applies_the_configured_errata_in_a_build_of_their_own(built, tmp_path):
    errata = tmp_path / "errata.csv"
    errata.write_text(
        "subject,filename,field,wrong,fixed,reason\n"
        "sub01,EP02_01f,emotion,disgust,repression,test\n"
        "sub02,EP05_02,row,,,test\n"
    )
    dataset = data_builders.load(casme2_data_config(built, errata=str(errata), strict=False))
    by_id = dict(zip(dataset["sample_id"], dataset["emotion"], strict=True))
    assert by_id["casme2/sub01/EP02_01f/46"] == "repression"
    assert "casme2/sub02/EP05_02/30" not in by_id
    notes = dataset.metadata["release_notes"]
    assert any(n.startswith("fixed:") and "errata.csv line 2" in n for n in notes)
    # A build of its own, next to the build without errata.
    _, builder, _, _ = built["casme2"]
    digest = errata_digest(read_errata(errata))
    with_errata = data_builders.get_builder(
        "casme2",
        data_dir=builder.data_dir_root,
        overrides=OVERRIDES,
        reading=data_builders.ReadOptions(errata=read_errata(errata)),
    )
    build = f"casme2/{with_errata.builder_config.name}:{with_errata.info.version}"
    assert dataset.metadata == {**with_errata.info.metadata, "build": build}
    assert build.endswith(f"-errata_{digest}:{with_errata.info.version}")
    variants = {path.name for path in (Path(builder.data_dir_root) / "casme2").iterdir()}
    assert {builder.builder_config.name, f"{builder.builder_config.name}-errata_{digest}"} <= (
        variants
    )


def test_load_relabels_with_the_configured_protocol(built, no_rebuild):
    dataset = data_builders.load(casme2_data_config(built, protocol="megc2019_3class"))
    assert dataset.class_names == ("negative", "positive", "surprise")
    # disgust and repression are negative, happiness positive; others and fear excluded.
    by_emotion = dict(zip(dataset["emotion"], dataset.labels.tolist(), strict=True))
    assert by_emotion == {"disgust": 0, "repression": 0, "happiness": 1}
    assert dataset.metadata["protocol"] == "casme2_5class"  # the build's own
    with pytest.raises(UserError, match="smic_3class has no label mapping for dataset 'casme2'"):
        data_builders.load(casme2_data_config(built, protocol="smic_3class"))


def test_load_data_dir_default_and_errors(built, tmp_path, monkeypatch, no_rebuild):
    _, builder, _, _ = built["casme2"]
    monkeypatch.setenv("MER_JAX_DATA_DIR", str(builder.data_dir_root))
    assert data_builders.default_data_dir() == str(builder.data_dir_root)
    absent = casme2_data_config(built)
    del absent["data_dir"]
    for config in (casme2_data_config(built, data_dir=None), absent):
        assert data_builders.load(config).num_samples == 4  # the cached build is found
    monkeypatch.delenv("MER_JAX_DATA_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = os.path.join(str(tmp_path), ".cache", "mer_jax", "datasets")
    assert data_builders.default_data_dir() == expected
    with pytest.raises(UserError, match="data.data_dir is empty"):
        data_builders.load(casme2_data_config(built, data_dir=" "))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(UserError, match="a_file is a file, not a folder"):
        data_builders.load(casme2_data_config(built, data_dir=str(tmp_path / "a_file")))


def test_a_licensed_database_without_manual_dir_says_where_to_get_it(tmp_path):
    with pytest.raises(UserError, match=r"built from its licensed release.*\n.*SAMM is licence"):
        data_builders.build("samm", data_dir=tmp_path)
    with pytest.raises(UserError, match="manual_dir .*nowhere for dataset mmew is not a folder"):
        data_builders.build("mmew", data_dir=tmp_path, manual_dir=tmp_path / "nowhere")
