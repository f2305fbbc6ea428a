"""The macro-expression pair builders (MA2MI pre-training), each from a tiny fake folder."""

import dataclasses
import json
from pathlib import Path

import cv2
import fake_releases
import grain
import ml_collections
import numpy as np
import pytest
import skimage.data

import data_builders
from data_builders import cli
from data_builders.casme2 import read_casme2
from data_builders.macro_pairs import PairOptions, clip_pairs, pair_step, plan_pairs
from data_builders.records import MacroClip
from data_builders.synthetic_macro.synthetic_macro_dataset_builder import raw_database_dir
from mer_jax.data.dataset import PairCorpus
from mer_jax.errors import UserError

CROP, PAIR = 64, 32
OVERRIDES = {"crop_size": CROP, "pair_size": PAIR}
FEATURES = {
    "pair_id": np.str_,
    "dataset": np.str_,
    "subject": np.str_,
    "clip": np.str_,
    "t": np.int32,
    "k": np.int32,
    "fps": np.float32,
    "frame_t": np.uint8,
    "frame_t_plus_k": np.uint8,
}


# Fake folders ---------------------------------------------------------------------------


def _points_txt(path: Path, points: np.ndarray) -> None:
    """A CK+ landmarks file: 68 lines of two numbers in scientific notation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"   {x:.7e}   {y:.7e}\n" for x, y in points))


def make_ckplus(root: Path) -> None:
    """CK+: S005 (grayscale, 6 frames), S010 (colour: 6 frames, and a 2-frame sequence too
    short for a pair), landmarks of each first frame, a stray .DS_Store."""
    images = root / "cohn-kanade-images"
    for subject, sequence, count, color in (
        ("S005", "001", 6, False),
        ("S010", "002", 6, True),
        ("S010", "004", 2, True),
    ):
        name = f"{subject}_{sequence}_{{:08d}}.png"
        numbers = list(range(1, count + 1))
        fake_releases.write_clip(images / subject / sequence, numbers, name, color=color)
        first = Path(name.format(1)).stem
        _points_txt(
            root / "Landmarks" / subject / sequence / f"{first}_landmarks.txt",
            fake_releases.face_points(0.0),
        )
    (images / "S005" / "001" / ".DS_Store").write_bytes(b"\x00")


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def _sidecar(path: Path, numbers: list[int]) -> None:
    """The repo's landmarks sidecar of the fake face of `fake_releases.write_clip` frames."""
    onset, offset = numbers[0], numbers[-1]
    lines = [",".join(["frame"] + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)])]
    for number in numbers:
        shift = fake_releases.shift_at(number, onset, (onset + offset) // 2, offset)
        points = fake_releases.face_points(shift)
        lines.append(",".join(map(str, [number, *points[:, 0], *points[:, 1]])))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def astronaut_frames(count: int) -> list[np.ndarray]:
    """A real face (dlib finds it) moving right by 1 px a frame."""
    face = cv2.resize(skimage.data.astronaut()[:400, 60:460], (192, 192), cv2.INTER_AREA)
    return [
        cv2.warpAffine(face, np.float32([[1, 0, i], [0, 1, 0]]), (192, 192),
                       borderMode=cv2.BORDER_REFLECT)
        for i in range(count)
    ]  # fmt: skip


def make_video_folder(root: Path) -> None:
    """alice/smile.avi: the astronaut, 10 frames at 60 fps (dlib, no sidecar);
    bob/take2/: 7 frame images 0001.png.. with a sidecar; carol/blink.avi: 2 frames
    (too short); a thumbnail and an empty subject folder."""
    _write_video(root / "alice" / "smile.avi", astronaut_frames(10), fps=60.0)
    numbers = list(range(1, 8))
    fake_releases.write_clip(root / "bob" / "take2", numbers, "{:04d}.png")
    _sidecar(root / "landmarks" / "bob" / "take2.csv", numbers)
    texture = cv2.cvtColor(fake_releases.texture(0.0), cv2.COLOR_GRAY2RGB)
    _write_video(root / "carol" / "blink.avi", [texture, texture], fps=30.0)
    (root / "carol" / "cover.jpg").write_bytes(b"")  # not a clip: beside a video, ignored
    (root / "dave").mkdir()


def make_casme3_macro(root: Path) -> None:
    """The fake CAS(ME)^3 Part A release (micro sheet, task frames, sidecars) plus a macro
    sheet with the header words of the release (sub, seq, ...)."""
    fake_releases.make_casme3(root)
    fake_releases.write_sheet(
        root / "annotation" / "cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx",
        ["sub", "seq", "onset", "apex", "offset", "au", "emotion"],
        [
            ["spNO.1", "a", 1, 3, 12, "6+12", "happiness"],
            ["spNO.1", "A", 14, "/", 30, "4", "disgust"],  # frame 25 lost: a gap
            ["spNO.2", "b", 4, 6, 13, "12", "happiness"],
            ["spNO.2", "c", 1, 2, 9, "1+2", "surprise"],  # offset 9 not on disk: skipped
        ],
    )


# Builds -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """name -> (examples, builder, folder) for each macro builder (synthetic: no folder)."""
    root = tmp_path_factory.mktemp("macro")
    data_dir = root / "data"
    makers = {"ckplus": make_ckplus, "video_folder": make_video_folder}
    makers["casme3_macro"] = make_casme3_macro
    result = {}
    for name, make in makers.items():
        make(root / name)
        builder = data_builders.build(
            name,
            data_dir=data_dir,
            manual_dir=root / name,
            overrides=OVERRIDES,
            workers=2 if name == "ckplus" else 1,  # ckplus: the process-pool path
        )
        result[name] = (data_builders.load_examples(builder), builder, root / name)
    overrides = {**OVERRIDES, "num_subjects": 2, "clips_per_subject": 1, "pairs_per_clip": 5}
    builder = data_builders.build(
        "synthetic_macro", data_dir=data_dir, overrides=overrides, workers=1
    )
    result["synthetic_macro"] = (data_builders.load_examples(builder), builder, None)
    return result


def _check_fields(examples, builder):
    n = builder.info.metadata["num_pairs"]
    assert n == len(examples["pair_id"]) == builder.info.splits["train"].num_examples > 0
    for key, dtype in FEATURES.items():
        values = examples[key]
        assert len(values) == n
        if dtype is np.str_:
            assert values.dtype.kind == "U", key
        else:
            assert values.dtype == dtype, key
    assert examples["frame_t"].shape == examples["frame_t_plus_k"].shape == (n, PAIR, PAIR, 3)
    ids = [f"{d}/{s.split('/', 1)[1]}/{c}/{t}" for d, s, c, t in zip(
        examples["dataset"], examples["subject"], examples["clip"], examples["t"], strict=True
    )]  # fmt: skip
    assert list(examples["pair_id"]) == ids and len(set(ids)) == n
    metadata = builder.info.metadata
    assert metadata["subjects"] == sorted(set(examples["subject"]))
    assert metadata["identities_known"] is True
    assert metadata["num_clips"] == len({(s, c) for s, c in zip(
        examples["subject"], examples["clip"], strict=True)})  # fmt: skip
    assert metadata["pair_size"] == PAIR and metadata["crop_size"] == CROP


def _pairs_of(examples):
    """(subject folder, clip) -> [(t, k)]."""
    pairs = {}
    for subject, clip, t, k in zip(
        examples["subject"], examples["clip"], examples["t"], examples["k"], strict=True
    ):
        pairs.setdefault((subject.split("/", 1)[1], clip), []).append((int(t), int(k)))
    return pairs


def test_ckplus_sequences_whole_with_landmarks_files(built):
    examples, builder, _ = built["ckplus"]
    _check_fields(examples, builder)
    assert builder.info.metadata["subjects"] == ["ckplus/S005", "ckplus/S010"]
    assert set(examples["dataset"]) == {"ckplus"} and (examples["fps"] == 30).all()
    # 6 frames, k = 2: t = 1..4, so t + k ends at the last frame.
    assert _pairs_of(examples) == {
        ("S005", "001"): [(1, 2), (2, 2), (3, 2), (4, 2)],
        ("S010", "002"): [(1, 2), (2, 2), (3, 2), (4, 2)],
    }
    (skipped,) = builder.info.metadata["skipped_clips"]
    assert "ckplus/S010/004" in skipped and "2 frame(s)" in skipped
    # Grayscale frames come back as 3 equal channels.
    gray = examples["frame_t"][examples["subject"] == "ckplus/S005"].astype(np.int16)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    # The faces move right with t: frames of one pair differ.
    assert (examples["frame_t"] != examples["frame_t_plus_k"]).any(axis=(1, 2, 3)).all()


def test_video_folder_k_scales_with_fps_and_dlib_finds_the_face(built):
    examples, builder, _ = built["video_folder"]
    _check_fields(examples, builder)
    assert builder.info.metadata["subjects"] == ["videos/alice", "videos/bob"]
    pairs = _pairs_of(examples)
    # 10 frames at 60 fps: k = 4, t = 0..5 (0-based video frames); 7 images at 30 fps: k = 2.
    assert pairs[("alice", "smile")] == [(t, 4) for t in range(6)]
    assert pairs[("bob", "take2")] == [(t, 2) for t in range(1, 6)]
    fps = dict(zip(examples["clip"], examples["fps"].tolist(), strict=False))
    assert fps == {"smile": 60.0, "take2": 30.0}
    assert set(examples["dataset"]) == {"videos"}
    (skipped,) = builder.info.metadata["skipped_clips"]
    assert "videos/carol/blink" in skipped
    notes = builder.info.metadata["release_notes"]
    assert any("dave" in note and "no video or frame folder" in note for note in notes)
    # The astronaut moved 4 px right between t and t+k: the crops show it (not a still).
    alice = examples["subject"] == "videos/alice"
    first, later = examples["frame_t"][alice][0], examples["frame_t_plus_k"][alice][0]
    assert np.abs(first.astype(np.int16) - later).mean() > 2.0


def test_casme3_macro_cut_like_micro_and_same_subjects(built):
    examples, builder, root = built["casme3_macro"]
    _check_fields(examples, builder)
    micro = data_builders.read_release("casme3", root)
    assert builder.info.metadata["subjects"] == sorted({r.subject for r in micro.records})
    assert builder.info.metadata["subjects"] == ["casme3/spNO.1", "casme3/spNO.2"]
    assert set(examples["dataset"]) == {"casme3_macro"} and (examples["k"] == 2).all()
    pairs = _pairs_of(examples)
    assert set(pairs) == {("spNO.1", "a_1"), ("spNO.1", "a_14"), ("spNO.2", "b_4")}
    # Onset 1 .. offset 12: 10 valid t, all kept (pairs_per_clip 16).
    assert [t for t, _ in pairs[("spNO.1", "a_1")]] == list(range(1, 11))
    # Frame 25 is lost: neither t nor t + k is 25, t + k stays within the offset 30.
    gap_ts = [t for t, _ in pairs[("spNO.1", "a_14")]]
    assert gap_ts == [*range(14, 23), 24, 26, 27, 28]
    notes = builder.info.metadata["release_notes"]
    assert any(note.startswith("skipped") and "spNO.2/c" in note for note in notes)
    assert any(note.startswith("gap") and "spNO.1/a" in note for note in notes)


def test_synthetic_macro_own_subjects_pairs_inside_clips(built):
    examples, builder, _ = built["synthetic_macro"]
    _check_fields(examples, builder)
    subjects = builder.info.metadata["subjects"]
    assert subjects == ["synthetic_macro/sub01", "synthetic_macro/sub02"]
    assert (examples["fps"] == 30).all() and (examples["k"] == 2).all()
    spec = builder.builder_config.spec()
    assert spec.kind == "macro"
    raw = raw_database_dir(Path(builder.data_dir_root) / "downloads", spec)
    records = {(r.subject_folder, r.filename): r for r in read_casme2(raw, dataset="x", fps=30)}
    assert builder.info.metadata["num_clips"] == len(records)
    for (subject, clip), pairs in _pairs_of(examples).items():
        record = records[subject, clip]
        ts = [t for t, _ in pairs]
        assert len(ts) == 5  # pairs_per_clip; clips have 15-120 frames (0.5-4 s at 30 fps)
        assert ts[0] == record.onset and ts[-1] + 2 == record.offset  # evenly over the span
        assert all(record.onset <= t and t + k <= record.offset for t, k in pairs)


def test_pair_source_reads_through_grain(built):
    _, builder, _ = built["ckplus"]
    source = data_builders.pair_source(builder)
    assert len(source) == builder.info.metadata["num_pairs"] == 8
    pair = source[0]
    assert set(pair) == set(FEATURES)
    assert isinstance(pair["subject"], str) and pair["subject"].startswith("ckplus/")
    assert pair["frame_t"].shape == (PAIR, PAIR, 3) and pair["frame_t"].dtype == np.uint8
    assert pair["t"].dtype == np.int32 and pair["fps"].dtype == np.float32
    dataset = grain.MapDataset.source(source).seed(0).shuffle().batch(4)
    batch = dataset[0]
    assert batch["frame_t_plus_k"].shape == (4, PAIR, PAIR, 3)
    streamed = grain.MapDataset.source(source).to_iter_dataset(
        grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)
    )
    ids = sorted(str(pair["pair_id"]) for pair in streamed)
    assert ids == sorted(built["ckplus"][0]["pair_id"])
    assert data_builders.pair_source("ckplus", builder.data_dir_root, overrides=OVERRIDES)[0]
    assert data_builders.macro_corpus_bytes(builder) == 8 * 2 * PAIR * PAIR * 3


def test_load_gives_a_pair_corpus(built):
    examples, builder, root = built["ckplus"]
    fields = {"name": "ckplus", "data_dir": str(builder.data_dir_root), "manual_dir": str(root)}
    config = ml_collections.ConfigDict({**fields, "overrides": OVERRIDES, "protocol": None})
    corpus = data_builders.load(config)  # found, not rebuilt
    assert isinstance(corpus, PairCorpus) and corpus.name == "ckplus"
    build = f"ckplus/{builder.builder_config.name}:{builder.info.version}"
    assert type(corpus.metadata) is dict
    assert corpus.metadata == {**builder.info.metadata, "build": build}
    assert corpus.subjects == ("ckplus/S005", "ckplus/S010")
    assert corpus.frame_bytes == data_builders.macro_corpus_bytes(builder) == 8 * 2 * PAIR**2 * 3
    assert len(corpus.source) == 8 and set(corpus.source[0]) == set(FEATURES)
    everything = corpus.load_all()
    assert set(everything) == set(examples)
    for key, values in everything.items():
        np.testing.assert_array_equal(values, examples[key], err_msg=key)
    config.protocol = "casme2_5class"
    with pytest.raises(UserError, match="'ckplus' is a macro-expression pair corpus"):
        data_builders.load(config)


def test_video_whose_container_misreports_its_frame_count(built):
    """More frames claimed than decoded, or none claimed: the pairs are those of the 10
    frames really there, the same as the build's."""
    examples, _, root = built["video_folder"]
    alice = examples["subject"] == "videos/alice"
    clip = MacroClip(
        dataset="videos",
        subject="videos/alice",
        clip="smile",
        fps=60.0,
        frame_numbers=(),
        video_path=root / "alice" / "smile.avi",
    )
    options = PairOptions(crop_size=CROP, pair_size=PAIR)
    for claimed in (tuple(range(20)), ()):
        pairs = clip_pairs(dataclasses.replace(clip, frame_numbers=claimed), options).examples
        assert [int(pair["t"]) for pair in pairs] == list(range(6))
        np.testing.assert_array_equal(
            np.stack([pair["frame_t_plus_k"] for pair in pairs]), examples["frame_t_plus_k"][alice]
        )


def test_plan_pairs_and_k():
    assert [pair_step(fps, 2) for fps in (30, 60, 25, 200, 15)] == [2, 4, 2, 13, 1]
    assert pair_step(45, 1) == 2  # 1.5 rounds up
    assert plan_pairs(range(1, 7), 2, 3) == [1, 3, 4]  # evenly over t = 1..4
    assert plan_pairs(range(1, 7), 2, 0) == [1, 2, 3, 4]
    assert plan_pairs([1, 2], 2, 16) == []
    assert plan_pairs([1, 2, 3, 5, 6, 7], 2, 0) == [1, 3, 5]  # 4 is missing


def test_dry_run_summarises_clips_pairs_and_fps(built, tmp_path, capsys):
    _, _, root = built["video_folder"]
    summary_path = tmp_path / "summary.json"
    status = cli.main(
        ["video_folder", "--manual_dir", str(root), "--dry_run", "--data_dir", str(tmp_path)]
        + ["--summary_json", str(summary_path)]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "clips: 3   subjects: 3   pairs: 11" in printed
    assert "60 fps: 1 clips (k=4)" in printed
    summary = json.loads(summary_path.read_text())
    assert summary["subject_names"] == ["videos/alice", "videos/bob", "videos/carol"]
    assert summary["clips_without_pairs"] == ["videos/carol/blink (2 frames)"]
    assert not (tmp_path / "video_folder").exists()  # a dry run builds nothing


def test_errors_name_the_folder_and_layout(tmp_path):
    with pytest.raises(UserError, match=r"built from a folder: .*\n.*CK\+ is licence"):
        data_builders.build("ckplus", data_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty\.\n.*CK\+ is licence"):
        data_builders.build("ckplus", data_dir=tmp_path, manual_dir=tmp_path / "empty")
    (tmp_path / "empty" / "S005").mkdir()  # frames without cohn-kanade-images/ above them
    with pytest.raises(UserError, match=r"no cohn-kanade-images/ folder; expected layout"):
        data_builders.build("ckplus", data_dir=tmp_path, manual_dir=tmp_path / "empty")
    with pytest.raises(
        UserError,
        match=r"holds no annotation sheet with the columns subject, filename, onset, offset "
        r"\(looked at: no .xlsx/.xls/.csv file\); expected layout: <root>/.../\*part_A_MaE",
    ):
        data_builders.read_release("casme3_macro", tmp_path / "empty")
    with pytest.raises(UserError, match="macro-expression pair corpora: .*video_folder"):
        data_builders.get_builder("ck_plus", data_dir=tmp_path)
    with pytest.raises(UserError, match="not built in"):
        data_builders.macro_corpus_bytes(data_builders.get_builder("ckplus", data_dir=tmp_path))
    videos = tmp_path / "videos"
    (videos / "erin").mkdir(parents=True)
    (videos / "erin" / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(UserError, match=r"1 video\(s\) .*cannot be read.*\n.*broken\.mp4"):
        data_builders.read_release("video_folder", videos)
    (videos / "erin" / "broken.mp4").unlink()
    fake_releases.write_clip(videos / "erin", [1, 2, 3], "{}.png")
    with pytest.raises(UserError, match=r"erin holds frame images but no clip"):
        data_builders.read_release("video_folder", videos)


def test_a_clip_without_face_is_skipped_by_name_unless_strict(tmp_path):
    """Texture frames (no face) and no sidecar: the clip is named where a sidecar would
    go; the corpus is built from the others, and a strict build writes nothing."""
    videos = tmp_path / "videos"
    fake_releases.write_clip(videos / "frank" / "still", [1, 2, 3, 4], "{}.png")
    fake_releases.write_clip(videos / "gina" / "nod", [1, 2, 3, 4], "{}.png")
    _sidecar(videos / "landmarks" / "gina" / "nod.csv", [1, 2, 3, 4])
    overrides = {**OVERRIDES, "dataset_name": "lab"}
    kwargs = {"data_dir": tmp_path / "data", "manual_dir": videos, "overrides": overrides}
    with pytest.raises(UserError) as error:
        data_builders.build(
            "video_folder", workers=1, reading=data_builders.ReadOptions(strict=True), **kwargs
        )
    message = str(error.value)
    assert "1 of 2 clips could not be built; a strict build" in message
    assert "clip lab/frank/still" in message and "no face found" in message
    assert str(videos / "landmarks" / "frank" / "still.csv") in message
    builder = data_builders.get_builder("video_folder", data_dir=tmp_path / "data",
                                        overrides=overrides)  # fmt: skip
    assert not builder.is_prepared()
    data_builders.build("video_folder", workers=1, **kwargs)
    builder = data_builders.get_builder("video_folder", data_dir=tmp_path / "data",
                                        overrides=overrides)  # fmt: skip
    assert builder.info.metadata["subjects"] == ["lab/gina"]
    (skipped,) = builder.info.metadata["skipped_clips"]
    assert "frank/still" in skipped and "no face found" in skipped
