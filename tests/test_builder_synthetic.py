"""Records reader, clip features and the synthetic_me TFDS builder (data_builders)."""

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest
import skimage.data

import data_builders
from data_builders.casme2 import read_casme2
from data_builders.clip_builder import clip_example
from data_builders.synthetic_me import Builder as SyntheticMEBuilder
from data_builders.synthetic_me.synthetic_me_dataset_builder import raw_database_dir
from mer_jax.data.action_units import AU_LIST
from mer_jax.errors import UserError
from mer_jax.preprocess import ClipFrames, ClipOptions, clip_features, flow_and_strain

FRAME_SIZE = 96
# Eye centres of the fake face in frame pixels: 36 px apart, so a 64 px crop (eyes
# 0.4 * 64 = 25.6 px apart) shrinks the frame by 25.6 / 36.
LEFT_EYE, RIGHT_EYE = (30.0, 40.0), (66.0, 40.0)
APEX_SHIFT = 1.0  # frame pixels of horizontal motion from onset to apex
CROP, FLOW = 64, 16
T = 16  # stored frames per clip (the builders' default)

# (subject, filename, onset, apex cell, offset, AUs, emotion)
CLIPS = [
    (1, "EP01_01f", 8, 11, 13, "R4+L10", "disgust"),
    (1, "EP02_03", 46, "/", 52, "12，14", "happiness"),
    (2, "EP01_02f", 100, 102, 105, "AU6B+12C", "Fear"),
    (2, "EP05_01", 7, 9, 12, "4(k)", "others"),
]


def texture(shift: float) -> np.ndarray:
    """A smooth random RGB texture sampled at x - shift: exact sub-pixel motion."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float64)
    x = x - shift
    image = np.zeros((FRAME_SIZE, FRAME_SIZE))
    for _ in range(24):
        fx, fy = rng.uniform(-0.2, 0.2, size=2)
        image += np.cos(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 2 * np.pi))
    gray = np.round(255 * (image - image.min()) / (image.max() - image.min())).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def fake_landmarks(shift: float) -> np.ndarray:
    points = np.tile([48.0 + shift, 70.0], (68, 1))
    ring = 3.0 * np.stack([np.cos(np.arange(6)), np.sin(np.arange(6))], axis=1)
    points[36:42] = np.add(LEFT_EYE, [shift, 0.0]) + ring - ring.mean(axis=0)
    points[42:48] = np.add(RIGHT_EYE, [shift, 0.0]) + ring - ring.mean(axis=0)
    return points


def write_coding_sheet(path: Path, rows: list[tuple]) -> None:
    """A coding sheet like CASME II's: a title row above the header, a blank spacer column."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["CASME II coding (fake)"])
    sheet.append(
        ["Subject", "Filename", "Onset Frame", "ApexFrame", "OffsetFrame", None]
        + ["Action Units", "Estimated Emotion"]
    )
    for subject, filename, onset, apex, offset, aus, emotion in rows:
        sheet.append([subject, filename, onset, apex, offset, None, aus, emotion])
    sheet.append([])
    workbook.save(path)


def make_fake_casme2(root: Path, clips: list[tuple] = CLIPS) -> Path:
    """A tiny CASME II-layout release: frames moving APEX_SHIFT px onset->apex, sidecars."""
    root.mkdir(parents=True, exist_ok=True)
    write_coding_sheet(root / "CASME2-coding-20140508.xlsx", clips)
    for subject, filename, onset, apex, offset, _, _ in clips:
        clip_dir = root / "CASME2_RAW_selected" / f"sub{subject:02d}" / filename
        clip_dir.mkdir(parents=True)
        apex_frame = apex if isinstance(apex, int) else (onset + offset) // 2
        sidecar = [
            "frame," + ",".join([f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)])
        ]
        for number in range(onset, offset + 1):
            # Motion ramps up to the apex, then back down towards the offset.
            if number <= apex_frame:
                shift = APEX_SHIFT * (number - onset) / max(1, apex_frame - onset)
            else:
                shift = APEX_SHIFT * (offset - number) / max(1, offset - apex_frame)
            cv2.imwrite(
                str(clip_dir / f"img{number}.jpg"), texture(shift), [cv2.IMWRITE_JPEG_QUALITY, 100]
            )
            points = fake_landmarks(shift)
            sidecar.append(
                ",".join(
                    [str(number)]
                    + [f"{v:.3f}" for v in points[:, 0]]
                    + [f"{v:.3f}" for v in points[:, 1]]
                )
            )
        (clip_dir / "Shortcut to EP01.lnk").write_bytes(b"\x4c\x00")
        (clip_dir / "Thumbs.db").write_bytes(b"")
        landmarks_dir = root / "landmarks" / f"sub{subject:02d}"
        landmarks_dir.mkdir(parents=True, exist_ok=True)
        (landmarks_dir / f"{filename}.csv").write_text("\n".join(sidecar) + "\n")
    return root


TINY = {"crop_size": CROP, "flow_size": FLOW, "num_subjects": 2, "clips_per_subject": 2}


def test_read_casme2_layout(tmp_path):
    records = read_casme2(make_fake_casme2(tmp_path), dataset="synthetic_me")
    assert [record.sample_id for record in records] == [
        "synthetic_me/sub01/EP01_01f/8",
        "synthetic_me/sub01/EP02_03/46",
        "synthetic_me/sub02/EP01_02f/100",
        "synthetic_me/sub02/EP05_01/7",
    ]
    first, no_apex = records[0], records[1]
    assert first.subject == "synthetic_me/sub01" and first.subject_folder == "sub01"
    # Sorted by the frame number, not the name (img9 before img10); .lnk and Thumbs.db skipped.
    assert first.frame_numbers == (8, 9, 10, 11, 12, 13)
    assert [path.name for path in first.frame_paths[:3]] == ["img8.jpg", "img9.jpg", "img10.jpg"]
    assert first.apex == 11 and first.apex_annotated
    assert no_apex.apex == 49 and not no_apex.apex_annotated  # middle of 46..52
    assert no_apex.action_units_raw == "12，14" and records[3].action_units_raw == "4(k)"
    assert first.landmarks_path == tmp_path / "landmarks" / "sub01" / "EP01_01f.csv"
    assert not first.face_cropped and first.fps == 200.0


def test_missing_annotated_frame_names_the_clip(tmp_path):
    root = make_fake_casme2(tmp_path)
    (root / "CASME2_RAW_selected" / "sub02" / "EP01_02f" / "img102.jpg").unlink()
    with pytest.raises(
        UserError, match=r"CASME2-coding-20140508\.xlsx row 5 clip sub02/EP01_02f: .*\[102\]"
    ):
        read_casme2(root)


def test_missing_coding_sheet_shows_the_layout(tmp_path):
    with pytest.raises(UserError, match="holds no annotation sheet with the columns.*layout"):
        read_casme2(tmp_path)


def test_coding_sheet_without_an_emotion_column_is_named(tmp_path):
    workbook = openpyxl.Workbook()
    workbook.active.append(["Subject", "Filename", "Onset", "Apex", "Offset", "Action Units"])
    workbook.active.append([1, "EP01_01f", 8, 11, 13, "4"])
    workbook.save(tmp_path / "CASME2-coding-x.xlsx")
    (tmp_path / "CASME2_RAW_selected").mkdir()
    with pytest.raises(
        UserError, match=r"\(looked at: CASME2-coding-x.xlsx: no column for emotion\)"
    ):
        read_casme2(tmp_path)


def test_build_reads_back_documented_fields(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    builder = data_builders.get_builder("synthetic_me", data_dir=data_dir, overrides=TINY)
    # A raw database already in place is used as is, so the fake release stands in for
    # the generator's output.
    make_fake_casme2(raw_database_dir(data_dir / "downloads", builder.builder_config.name))
    builder = data_builders.build("synthetic_me", data_dir=data_dir, overrides=TINY, workers=2)
    assert builder.info.metadata["protocol"] == "casme2_5class"
    assert builder.info.metadata["class_names"][1] == "disgust"

    examples = data_builders.load_examples(builder)
    n = len(CLIPS)
    expected = {
        "sample_id": ((n,), np.str_),
        "dataset": ((n,), np.str_),
        "subject": ((n,), np.str_),
        "filename": ((n,), np.str_),
        "emotion": ((n,), np.str_),
        "label": ((n,), np.int64),
        "action_units_raw": ((n,), np.str_),
        "action_units": ((n, len(AU_LIST)), np.uint8),
        "fps": ((n,), np.float32),
        "onset_index": ((n,), np.int32),
        "apex_index": ((n,), np.int32),
        "offset_index": ((n,), np.int32),
        "apex_annotated": ((n,), np.bool_),
        "onset_image": ((n, CROP, CROP, 3), np.uint8),
        "apex_image": ((n, CROP, CROP, 3), np.uint8),
        "offset_image": ((n, CROP, CROP, 3), np.uint8),
        "flow": ((n, FLOW, FLOW, 2), np.float16),
        "strain": ((n, FLOW, FLOW, 1), np.float16),
        "landmarks_onset": ((n, 68, 2), np.float32),
        "landmarks_apex": ((n, 68, 2), np.float32),
        "action_units_known": ((n,), np.uint8),
        "frame_indices": ((n, T), np.int32),
        "frames": ((n, T, CROP, CROP, 3), np.uint8),
        "landmarks_frames": ((n, T, 68, 2), np.float32),
        "flow_onset_to_t": ((n, T, FLOW, FLOW, 2), np.float16),
        "flow_t_to_offset": ((n, T, FLOW, FLOW, 2), np.float16),
        "strain_onset_to_t": ((n, T, FLOW, FLOW, 1), np.float16),
        "strain_t_to_offset": ((n, T, FLOW, FLOW, 1), np.float16),
    }
    assert set(examples) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert examples[key].shape == shape, key
        assert examples[key].dtype.type is dtype, key

    assert list(examples["sample_id"]) == sorted(examples["sample_id"])
    by_id = {sample_id: i for i, sample_id in enumerate(examples["sample_id"])}
    assert set(examples["subject"]) == {"synthetic_me/sub01", "synthetic_me/sub02"}
    disgust = by_id["synthetic_me/sub01/EP01_01f/8"]
    assert examples["label"][disgust] == 1
    assert examples["label"][by_id["synthetic_me/sub02/EP01_02f/100"]] == -1  # fear: excluded
    assert examples["emotion"][by_id["synthetic_me/sub02/EP01_02f/100"]] == "Fear"
    assert list(examples["action_units"][disgust].nonzero()[0]) == [
        AU_LIST.index(4),
        AU_LIST.index(10),
    ]
    no_apex = by_id["synthetic_me/sub01/EP02_03/46"]
    assert not examples["apex_annotated"][no_apex] and examples["apex_index"][no_apex] == 49

    # The onset landmarks define the alignment: eye centres land on the canonical spots.
    eyes = examples["landmarks_onset"][:, 36:42].mean(axis=1)
    np.testing.assert_allclose(eyes, np.tile([0.3 * CROP, 0.4 * CROP], (n, 1)), atol=0.01)
    # Flow in crop pixels: the 1 px frame motion is 25.6 / 36 px in the crop.
    crop_shift = APEX_SHIFT * 0.4 * CROP / (RIGHT_EYE[0] - LEFT_EYE[0])
    interior = examples["flow"][:, 3:-3, 3:-3].astype(np.float32)
    np.testing.assert_allclose(interior[..., 0].mean(axis=(1, 2)), crop_shift, atol=0.12)
    assert np.abs(interior[..., 1].mean(axis=(1, 2))).max() < 0.1
    assert np.isfinite(examples["strain"].astype(np.float32)).all()
    # Apex landmarks (from the sidecar) moved with the face.
    moved = examples["landmarks_apex"][:, :, 0] - examples["landmarks_onset"][:, :, 0]
    np.testing.assert_allclose(moved.mean(axis=1), crop_shift, atol=0.01)

    # The T stored frames run from onset to offset, evenly in time.
    indices = examples["frame_indices"]
    np.testing.assert_array_equal(indices[:, 0], examples["onset_index"])
    np.testing.assert_array_equal(indices[:, -1], examples["offset_index"])
    assert (np.diff(indices, axis=1) >= 0).all()
    np.testing.assert_array_equal(examples["frames"][:, 0], examples["onset_image"])
    np.testing.assert_array_equal(examples["landmarks_frames"][:, 0], examples["landmarks_onset"])
    # onset->t follows the ramp (0 at the onset, the full shift at the apex), t->offset
    # is its mirror: back to 0 at the offset.
    to_t = examples["flow_onset_to_t"][:, :, 3:-3, 3:-3, 0].astype(np.float32).mean(axis=(2, 3))
    from_t = examples["flow_t_to_offset"][:, :, 3:-3, 3:-3, 0].astype(np.float32).mean(axis=(2, 3))
    np.testing.assert_allclose(to_t[:, 0], 0.0, atol=0.05)
    np.testing.assert_allclose(from_t[:, -1], 0.0, atol=0.05)
    at_apex = np.abs(indices - examples["apex_index"][:, None]).argmin(axis=1)
    np.testing.assert_allclose(to_t[np.arange(n), at_apex], crop_shift, atol=0.15)
    np.testing.assert_allclose(from_t[np.arange(n), at_apex], -crop_shift, atol=0.15)

    # A second build finds the complete one and does not rebuild.
    monkeypatch.setattr(
        SyntheticMEBuilder, "download_and_prepare", lambda *a, **k: pytest.fail("rebuilt")
    )
    again = data_builders.build("synthetic_me", data_dir=data_dir, overrides=TINY)
    assert again.data_dir == builder.data_dir
    by_name = data_builders.load_examples("synthetic_me", data_dir, overrides=TINY)
    np.testing.assert_array_equal(by_name["flow"], examples["flow"])


def test_build_with_a_missing_frame_fails_naming_the_clip(tmp_path):
    data_dir = tmp_path / "data"
    overrides = dict(TINY, seed=1)
    builder = data_builders.get_builder("synthetic_me", data_dir=data_dir, overrides=overrides)
    root = make_fake_casme2(raw_database_dir(data_dir / "downloads", builder.builder_config.name))
    (root / "CASME2_RAW_selected" / "sub01" / "EP01_01f" / "img13.jpg").unlink()
    with pytest.raises(UserError, match=r"clip sub01/EP01_01f: annotated frame\(s\) \[13\] not"):
        data_builders.build("synthetic_me", data_dir=data_dir, overrides=overrides, workers=1)
    assert not builder.is_prepared()


def test_config_variants_and_errors(tmp_path):
    def config_name(**overrides):
        return data_builders.get_builder(
            "synthetic_me", data_dir=tmp_path, overrides=overrides
        ).builder_config.name

    assert config_name() == "default"
    assert config_name(num_subjects=16) == "default"  # the default value: same data, same cache
    assert config_name(num_subjects=4, crop_size=64) == "default-crop_size_64-num_subjects_4"
    assert config_name(crop_size=64, num_subjects=4) == "default-crop_size_64-num_subjects_4"
    assert config_name(flow_method="dis") == "default-flow_method_dis"
    assert config_name(flow_method="tvl1_jax") == "default-flow_method_tvl1_jax"
    with pytest.raises(
        UserError,
        match="unknown override .subjects.*valid keys: clip_count_shape, clips_per_subject, crop_",
    ):
        config_name(subjects=4)
    with pytest.raises(UserError, match=r"crop_size='64'.*expected int \(like the default 128\)"):
        config_name(crop_size="64")
    with pytest.raises(UserError, match="unknown flow_method 'raft'"):
        config_name(flow_method="raft")
    with pytest.raises(
        UserError, match="unknown dataset builder 'casme4'; known builders: casme2, casme3"
    ):
        data_builders.build("casme4", data_dir=tmp_path)
    with pytest.raises(UserError, match="no config 'large'; known configs: casme2_shaped, default"):
        data_builders.get_builder("synthetic_me", data_dir=tmp_path, config="large")
    with pytest.raises(UserError, match="not built in"):
        data_builders.load_examples("synthetic_me", tmp_path)


def write_clip_frames(clip_dir: Path, image: np.ndarray, numbers: range, prefix: str) -> None:
    clip_dir.mkdir(parents=True)
    for number in numbers:
        shift = 0.5 * (number - numbers.start)
        moved = cv2.warpAffine(image, np.float32([[1, 0, shift], [0, 1, 0]]), image.shape[1::-1])
        cv2.imwrite(str(clip_dir / f"{prefix}{number}.png"), cv2.cvtColor(moved, cv2.COLOR_RGB2BGR))


@pytest.mark.parametrize("layout", ["raw", "cropped"])
def test_clip_features_with_dlib(tmp_path, layout):
    """Without a landmarks sidecar: dlib on the onset frame (raw) or on the crop (cropped)."""
    astronaut = skimage.data.astronaut()
    if layout == "raw":
        frames_dir, prefix, image = "CASME2_RAW_selected", "img", astronaut[:300, 80:380]
    else:  # a face crop like CASME II's "Cropped" release, not square
        frames_dir, prefix, image = "Cropped", "reg_img", astronaut[60:240, 150:290]
    write_coding_sheet(
        tmp_path / "CASME2-coding-x.xlsx", [(3, "EP09_01", 20, 22, 23, "12", "happiness")]
    )
    write_clip_frames(tmp_path / frames_dir / "sub03" / "EP09_01", image, range(20, 24), prefix)
    (record,) = read_casme2(tmp_path)
    assert record.face_cropped == (layout == "cropped") and record.landmarks_path is None

    example = clip_example(record, ClipOptions(crop_size=CROP, flow_size=FLOW), label=0)
    assert example["onset_image"].shape == (CROP, CROP, 3) and example["flow"].dtype == np.float16
    for key in ("landmarks_onset", "landmarks_apex"):
        landmarks = example[key]
        assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
        assert landmarks[36:48, 1].mean() < landmarks[30, 1] < landmarks[48:68, 1].mean()
    if layout == "raw":
        eyes = example["landmarks_onset"][36:42].mean(axis=0)
        np.testing.assert_allclose(eyes, [0.3 * CROP, 0.4 * CROP], atol=0.01)

    # The same frames described without a record or coding sheet (a user's own folder):
    # the same features.
    folder = tmp_path / frames_dir / "sub03" / "EP09_01"
    clip = ClipFrames(
        name="my clip",
        frame_numbers=(20, 21, 22, 23),
        frame_paths=tuple(folder / f"{prefix}{number}.png" for number in range(20, 24)),
        onset=20,
        apex=22,
        offset=23,
        face_cropped=layout == "cropped",
    )
    features = clip_features(clip, ClipOptions(crop_size=CROP, flow_size=FLOW))
    assert set(features) < set(example)
    for key, value in features.items():
        np.testing.assert_array_equal(value, example[key], err_msg=key)


def test_clip_without_a_face_names_the_clip(tmp_path):
    write_coding_sheet(
        tmp_path / "CASME2-coding-x.xlsx", [(3, "EP09_01", 20, 21, 22, "12", "happiness")]
    )
    write_clip_frames(
        tmp_path / "CASME2_RAW_selected" / "sub03" / "EP09_01",
        np.zeros((120, 160, 3), np.uint8),
        range(20, 23),
        "img",
    )
    (record,) = read_casme2(tmp_path)
    with pytest.raises(
        UserError,
        match=r"clip casme2/sub03/EP09_01/20: no face found in frames \[20, 21, 22\] of .*EP09_01",
    ):
        clip_example(record, ClipOptions(crop_size=CROP, flow_size=FLOW), label=0)


def test_synthetic_me_end_to_end(tmp_path):
    overrides = {"num_subjects": 2, "clips_per_subject": 2, "crop_size": CROP}
    builder = data_builders.build("synthetic_me", data_dir=tmp_path, overrides=overrides, workers=2)
    raw_dir = raw_database_dir(tmp_path / "downloads", builder.builder_config.name)
    manifest = json.loads((raw_dir / "generation.json").read_text())
    examples = data_builders.load_examples(builder)
    n = manifest["counts"]["clips"]
    assert len(examples["sample_id"]) == n
    assert set(examples["subject"]) == {"synthetic_me/sub01", "synthetic_me/sub02"}
    assert examples["onset_image"].shape == (n, CROP, CROP, 3)
    assert examples["flow"].shape == (n, 28, 28, 2) and examples["strain"].shape == (n, 28, 28, 1)
    assert (examples["fps"] == 200).all()
    assert ((examples["label"] >= -1) & (examples["label"] < 5)).all()
    # Sidecar landmarks aligned the onset: eye centres on the canonical spots.
    eyes = examples["landmarks_onset"][:, 36:42].mean(axis=1)
    np.testing.assert_allclose(eyes, np.tile([0.3 * CROP, 0.4 * CROP], (n, 1)), atol=0.01)
    assert np.abs(examples["flow"].astype(np.float32)).max() > 0.1  # the expression moved


def test_tvl1_jax_build_solves_the_flows_in_batches_like_opencv(tmp_path, monkeypatch):
    # 3 clips a batch: the build solves full batches and a last, partial one.
    monkeypatch.setattr(SyntheticMEBuilder, "FLOW_BATCH", 3)
    overrides = {
        "num_subjects": 2,
        "num_clips": 5,
        "crop_size": CROP,
        "flow_method": "tvl1_jax",
        "num_frames": 0,
    }
    builder = data_builders.build("synthetic_me", data_dir=tmp_path, overrides=overrides, workers=2)
    assert builder.info.metadata["flow_method"] == "tvl1_jax"
    examples = data_builders.load_examples(builder)
    n = len(examples["sample_id"])
    assert n == 5 and examples["flow"].shape == (n, 28, 28, 2)
    for onset, apex, flow, strain in zip(
        examples["onset_image"],
        examples["apex_image"],
        examples["flow"],
        examples["strain"],
        strict=True,
    ):
        opencv_flow, opencv_strain = flow_and_strain(onset, apex, 28, "tvl1")
        assert np.abs(flow.astype(np.float32) - opencv_flow).mean() < 0.05
        assert np.abs(strain.astype(np.float32) - opencv_strain).mean() < 0.02
    assert np.abs(examples["flow"].astype(np.float32)).max() > 0.1  # the expression moved


def test_megc2019_shaped_config_is_442_clips_of_68_subjects_in_3_classes(tmp_path):
    from collections import Counter

    from mer_jax.data.protocols import get_protocol
    from mer_jax.synthetic.recordings import plan_database

    builder = data_builders.get_builder(
        "synthetic_me", data_dir=tmp_path, config="megc2019_shaped"
    )
    assert builder.info.metadata["protocol"] == "megc2019_3class"
    assert builder.info.metadata["class_names"] == ["negative", "positive", "surprise"]
    plans = plan_database(builder.builder_config.spec())
    per_subject = Counter(plan.subject for plan in plans)
    assert len(plans) == 442 and len(per_subject) == 68
    assert set(per_subject.values()) == {6, 7}  # dealt as evenly as possible
    protocol = get_protocol("megc2019_3class")
    labels = Counter(protocol.label_of("synthetic_me", plan.emotion) for plan in plans)
    # Every clip has a class, in about the composite's proportions (250 / 109 / 83).
    assert set(labels) == {0, 1, 2}
    for label, expected in ((0, 250), (1, 109), (2, 83)):
        assert abs(labels[label] - expected) < 20, labels
    # The default config keeps its protocol and its drawn clip counts.
    default = data_builders.get_builder("synthetic_me", data_dir=tmp_path)
    assert default.info.metadata["protocol"] == "casme2_5class"
    assert default.builder_config.spec().num_clips == 0


def test_casme2_shaped_config_shares_255_clips_among_26_subjects_as_drawn(tmp_path):
    from collections import Counter

    from mer_jax.synthetic.recordings import CASME2_EMOTION_COUNTS, plan_database

    builder = data_builders.get_builder("synthetic_me", data_dir=tmp_path, config="casme2_shaped")
    assert builder.info.metadata["protocol"] == "casme2_5class"
    spec = builder.builder_config.spec()
    per_subject = Counter(plan.subject for plan in plan_database(spec))
    assert sum(per_subject.values()) == 255 and len(per_subject) == 26
    # In proportion to the drawn counts: they vary from subject to subject, in the same
    # order as the draw of the same spec without a fixed total.
    drawn = Counter(
        plan.subject for plan in plan_database(dataclasses.replace(spec, num_clips=0))
    )
    assert max(per_subject.values()) - min(per_subject.values()) >= 8
    most, fewest = max(drawn, key=drawn.get), min(drawn, key=drawn.get)
    assert per_subject[most] > per_subject[fewest]
    # CASME II's emotion counts exactly, while most subjects show only a few classes.
    plans = plan_database(spec)
    assert Counter(plan.emotion for plan in plans) == CASME2_EMOTION_COUNTS
    classes = [len({p.emotion for p in plans if p.subject == s}) for s in per_subject]
    assert sorted(classes)[len(classes) // 2] <= 4
