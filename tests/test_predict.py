"""Predicting on new clips with a trained LOSO workdir, and the exported predictor.

One tiny STSTNet LOSO run on the session's synthetic build is trained once for the
module; a clip of that build's raw database is then given to `mer_jax.predict` as a
frame folder, as a video and through a CSV, and compared with the same clip read
through the build.
"""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import fixtures
import jax
import numpy as np
import pytest
from fixtures import ROOT, launch, launch_env, tiny_config
from flax import nnx

import data_builders
from data_builders.synthetic_me.synthetic_me_dataset_builder import raw_database_dir
from mer_jax import export, models, predict
from mer_jax.errors import UserError
from mer_jax.predict import requests
from mer_jax.preprocess import read_landmarks_sidecar, sidecar_path, write_landmarks_csv
from mer_jax.synthetic.demo import write_video
from mer_jax.workdir import PREDICTIONS_NEW_CSV, Ensemble

# The session's tiny dataset, a fixture of this module too.
synthetic_data_dir = fixtures.synthetic_data_dir

# Mean ensemble probabilities of the clip written as an .mp4 (OpenCV's mp4v codec, lossy)
# may differ from those of its lossless frames by this much. Measured on 2026-12-02: 0.006
# (the codec moves pixels by a few grey levels, which moves the 28 x 28 flow of a 0.5-2 px
# motion a little); the margin allows another FFmpeg build's encoder.
VIDEO_PROB_ATOL = 0.02
# The exported function is the live one, lowered for several platforms and compiled again.
EXPORT_PROB_ATOL = 1e-6
# A synthetic micro-expression's profile is flat near its apex, and the head and the light
# drift: the motion peak of this 79-frame clip lands within 15 frames (75 ms at 200 fps)
# of the annotated apex (11 measured on this clip's mp4).
APEX_TOLERANCE = 15


@pytest.fixture(scope="module")
def workdir(synthetic_data_dir, tmp_path_factory) -> Path:
    """A finished tiny LOSO run (4 folds x 2 seeds), stacked in chunks of 3 replicas
    padded to the 8 devices, so restoring drops padding rows."""
    config = tiny_config(
        synthetic_data_dir, {"engine.mode": "stacked", "engine.replicas_per_chunk": 3}
    )
    path = tmp_path_factory.mktemp("loso")
    fixtures.make_run(config, path).train()
    return path


@pytest.fixture(scope="module")
def ensemble(workdir) -> Ensemble:
    return Ensemble(workdir)


@pytest.fixture(scope="module")
def built_clip(synthetic_data_dir) -> dict:
    """One clip of the build: its example's arrays and its raw frame folder and sidecar."""
    builder = data_builders.get_builder(
        "synthetic_me", data_dir=synthetic_data_dir, overrides=fixtures.OVERRIDES
    )
    examples = data_builders.load_examples(builder)
    index = 0
    raw = raw_database_dir(synthetic_data_dir / "downloads", builder.builder_config.name)
    subject = str(examples["subject"][index]).rsplit("/", 1)[-1]
    filename = str(examples["filename"][index])
    return {
        "example": {name: values[index] for name, values in examples.items()},
        "folder": raw / "CASME2_RAW_selected" / subject / filename,
        "sidecar": raw / "landmarks" / subject / f"{filename}.csv",
    }


@pytest.fixture(scope="module")
def clip_folder(built_clip, tmp_path_factory) -> Path:
    """The clip's frame folder with its sidecar where predict reads it."""
    folder = tmp_path_factory.mktemp("folder") / "clip"
    shutil.copytree(built_clip["folder"], folder)
    shutil.copy(built_clip["sidecar"], sidecar_path(folder))
    return folder


@pytest.fixture(scope="module")
def clip_video(built_clip, tmp_path_factory) -> Path:
    """The clip's frames onset..offset as an mp4, its sidecar re-numbered from 0."""
    example = built_clip["example"]
    onset, offset = int(example["onset_index"]), int(example["offset_index"])
    numbers = range(onset, offset + 1)
    folder = built_clip["folder"]
    frames = [cv2.imread(str(next(folder.glob(f"*{n}.jpg")))) for n in numbers]  # BGR
    video = write_video(frames, tmp_path_factory.mktemp("video") / "clip.mp4")
    landmarks = read_landmarks_sidecar(built_clip["sidecar"])
    moved = np.stack([landmarks[n] for n in numbers])  # numbered from 0, as the video's frames
    write_landmarks_csv(sidecar_path(video), range(len(numbers)), moved)
    return video


def frames_of(example: dict) -> dict[str, int]:
    return {
        "onset": int(example["onset_index"]),
        "offset": int(example["offset_index"]),
        "apex": int(example["apex_index"]),
    }


def build_prediction(ensemble: Ensemble, example: dict) -> dict[str, np.ndarray]:
    return ensemble.predict({name: example[name][None] for name in ensemble.inputs})


def test_frame_folder_gives_the_builds_features_and_prediction(ensemble, built_clip, clip_folder):
    example = built_clip["example"]
    request = requests.ClipRequest(clip_folder, **frames_of(example))
    _, features = requests.preprocess(request, ensemble.build)
    for name in ("flow", "strain", "onset_image", "apex_image", "frames", "flow_onset_to_t"):
        np.testing.assert_array_equal(features[name], example[name], err_msg=name)

    predictions = predict.predict_clips(ensemble, [request])
    expected = build_prediction(ensemble, example)
    np.testing.assert_array_equal(predictions.probabilities, expected["probabilities"])
    np.testing.assert_array_equal(predictions.spread, expected["spread"])
    assert len(ensemble.replicas) == 8  # 4 folds x 2 seeds, padding rows dropped
    assert predictions.spread.max() > 0  # the replicas differ


def test_video_matches_the_build_within_the_codec_tolerance(ensemble, built_clip, clip_video):
    example = built_clip["example"]
    frames = frames_of(example)
    request = requests.ClipRequest(
        clip_video,
        onset=0,
        offset=frames["offset"] - frames["onset"],
        apex=frames["apex"] - frames["onset"],
    )
    predictions = predict.predict_clips(ensemble, [request])
    expected = build_prediction(ensemble, example)["probabilities"]
    difference = np.abs(predictions.probabilities - expected).max()
    print(f"mp4 vs build: max |mean probability difference| {difference:.4f}")
    assert difference < VIDEO_PROB_ATOL


def test_whole_video_is_the_clip_with_a_warning(ensemble, built_clip, clip_video, caplog):
    count = int(cv2.VideoCapture(str(clip_video)).get(cv2.CAP_PROP_FRAME_COUNT))
    with caplog.at_level("WARNING", logger="mer_jax.predict"):
        predictions = predict.predict_clips(ensemble, [requests.ClipRequest(clip_video)])
    clip = predictions.clips[0]
    assert (clip.onset, clip.offset) == (0, count - 1)
    # No apex given: the motion peak, near the generator's apex (not the middle frame).
    frames = frames_of(built_clip["example"])
    true_apex = frames["apex"] - frames["onset"]
    print(f"motion-peak apex {clip.apex}, true apex {true_apex}, middle {(count - 1) // 2}")
    assert abs(clip.apex - true_apex) <= APEX_TOLERANCE
    assert "whole video" in caplog.text


def test_csv_of_clips_writes_one_row_each(workdir, ensemble, built_clip, clip_folder, clip_video):
    example = built_clip["example"]
    frames = frames_of(example)
    listing = clip_video.parent / "clips.csv"
    listing.write_text(
        "path,onset,offset,apex\n"
        f"{clip_folder},{frames['onset']},{frames['offset']},{frames['apex']}\n"
        f"{clip_video.name},0,{frames['offset'] - frames['onset']},\n"
    )
    predictions, path = predict.predict_workdir(workdir, listing)
    assert path == workdir / PREDICTIONS_NEW_CSV
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    last = frames["offset"] - frames["onset"]
    assert [row["clip"] for row in rows] == [str(clip_folder), f"{clip_video} frames 0..{last}"]
    names = ensemble.build.class_names
    probabilities = np.array([[float(row[f"p_{n}"]) for n in names] for row in rows])
    np.testing.assert_allclose(probabilities, predictions.probabilities, atol=1e-6)
    np.testing.assert_allclose(
        probabilities[0], build_prediction(ensemble, example)["probabilities"][0], atol=1e-6
    )
    assert [row["pred_class"] for row in rows] == [names[p.argmax()] for p in probabilities]
    # The video row gave no apex: its motion peak.
    assert abs(int(rows[1]["apex"]) - (frames["apex"] - frames["onset"])) <= APEX_TOLERANCE
    assert "+-" in predictions.table()


def test_export_round_trip_without_the_training_code(workdir, ensemble, built_clip, tmp_path):
    result = launch(f"--workdir={workdir}", "--mode=export", f"--output={tmp_path / 'export'}")
    assert result.returncode == 0, result.stderr[-3000:]
    example = built_clip["example"]
    inputs = {name: np.stack([example[name]] * 3) for name in ensemble.inputs}
    np.savez(tmp_path / "inputs.npz", **inputs)
    script = (
        "import sys, numpy as np\n"
        "from mer_jax import export\n"
        f"predictor = export.load({str(tmp_path / 'export')!r})\n"
        f"inputs = dict(np.load({str(tmp_path / 'inputs.npz')!r}))\n"
        "outputs = predictor.predict(inputs)\n"
        f"np.savez({str(tmp_path / 'outputs.npz')!r}, **outputs)\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('mer_jax.', 'flax', 'optax')))\n"
        "print(','.join(loaded))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=launch_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.strip()
    assert loaded.split(",") == ["mer_jax.errors", "mer_jax.export"]
    outputs = dict(np.load(tmp_path / "outputs.npz"))
    live = ensemble.predict(inputs)
    for name in ("probabilities", "spread", "replica_probabilities"):
        np.testing.assert_allclose(outputs[name], live[name], atol=EXPORT_PROB_ATOL)
    info = json.loads((tmp_path / "export" / export.PREDICTOR_JSON).read_text())
    assert info["class_names"] == list(ensemble.build.class_names)
    assert info["preprocessing"]["crop_size"] == fixtures.OVERRIDES["crop_size"]
    assert info["platforms"] == ["cpu", "cuda", "tpu"]


def test_exported_predictor_refuses_inputs_of_another_build(workdir, built_clip, tmp_path):
    predictor_dir = predict.export_workdir(workdir, tmp_path / "export")
    predictor = export.load(predictor_dir)
    flow = built_clip["example"]["flow"]
    with pytest.raises(UserError, match="flow has per-sample shape"):
        predictor.predict({"flow": flow[None, :14, :14], "strain": np.zeros((1, 28, 28, 1))})


def test_dere_grl_logits_ignore_the_action_units_a_new_clip_lacks():
    # Why predict may give DeRe-GRL zeros for the AU vector and its mask: its logits never
    # read them.
    model = models.create_model({"name": "dere_grl", "crop_size": 64}, 5, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    batch = {
        "flow": rng.normal(size=(2, 28, 28, 2)).astype(np.float16),
        "landmarks_onset": rng.uniform(10, 50, size=(2, 68, 2)).astype(np.float32),
        "landmarks_apex": rng.uniform(10, 50, size=(2, 68, 2)).astype(np.float32),
    }
    graphdef, state = nnx.split(model)

    @jax.jit
    def logits(batch: dict[str, jax.Array]) -> jax.Array:
        merged = nnx.merge(graphdef, state)
        inputs = merged.prepare(batch, jax.random.key(0), train=False)
        return merged(inputs, train=False)["logits"]

    logits = [
        logits(
            {
                **batch,
                "action_units": np.full((2, 20), value, np.uint8),
                "action_units_known": np.full((2,), value, np.uint8),
            }
        )
        for value in (0, 1)
    ]
    np.testing.assert_array_equal(logits[0], logits[1])


# -- errors -------------------------------------------------------------------------------


def test_workdir_without_finished_training(workdir, tmp_path):
    for name in ("config.json", "dataset.json"):
        shutil.copy(workdir / name, tmp_path / name)
    with pytest.raises(UserError, match="no finished training"):
        Ensemble(tmp_path)
    result = launch(f"--workdir={tmp_path}", "--mode=predict", f"--input={tmp_path}")
    assert result.returncode == 2 and "no finished training" in result.stderr
    assert "Traceback" not in result.stderr


def test_video_opencv_cannot_read(ensemble, tmp_path):
    video = tmp_path / "broken.mp4"
    video.write_bytes(b"not a video" * 100)
    with pytest.raises(UserError, match="cannot open video|cannot decode any frame"):
        predict.predict_clips(ensemble, [requests.ClipRequest(video, 0, 5)])


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        ({"onset": 0, "offset": 10_000}, "offset 10000 is out of range"),
        ({"onset": 5, "offset": 2}, "onset 5 is after offset 2"),
        ({"onset": 0}, "give both onset and offset"),
        ({"onset": 0, "offset": 8, "apex": 9}, "apex 9 is out of range|apex 9 is outside"),
    ],
)
def test_onset_offset_out_of_range(ensemble, clip_video, frames, message):
    with pytest.raises(UserError, match=message):
        predict.predict_clips(ensemble, [requests.ClipRequest(clip_video, **frames)])


def test_no_face_names_the_clip_and_the_sidecar(ensemble, tmp_path):
    blank = [np.full((96, 96, 3), 128, np.uint8)] * 5
    folder = tmp_path / "blank"
    folder.mkdir()
    for number, frame in enumerate(blank, start=1):
        cv2.imwrite(str(folder / f"img{number}.jpg"), frame)
    video = write_video(blank, tmp_path / "blank.mp4")
    for clip in (folder, video):
        with pytest.raises(UserError, match="no face found in frames") as caught:
            predict.predict_clips(ensemble, [requests.ClipRequest(clip)])
        # The frames looked at (the onset, the next ones, the apex) and the fix.
        assert str(clip) in str(caught.value)
        assert str(sidecar_path(clip)) in str(caught.value)


def test_cropped_release_build_takes_face_crops_only(
    workdir, clip_video, clip_folder, tmp_path, caplog
):
    for name in ("dataset.json", "metrics.json"):
        shutil.copy(workdir / name, tmp_path / name)
    shutil.copytree(workdir / "checkpoints", tmp_path / "checkpoints")
    config = json.loads((workdir / "config.json").read_text())
    config["data"]["builder_config"] = "cropped"
    (tmp_path / "config.json").write_text(json.dumps(config))
    cropped = Ensemble(tmp_path)
    with pytest.raises(UserError, match="official face crops"):
        predict.predict_clips(cropped, [requests.ClipRequest(clip_video)])
    # A frame folder is taken as face crops, with a warning, and only resized.
    with caplog.at_level("WARNING", logger="mer_jax.predict"):
        clip = requests.clip_frames(requests.ClipRequest(clip_folder), cropped.build, tmp_path)
    assert clip.face_cropped and "taken as face crops" in caplog.text
