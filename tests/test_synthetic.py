"""The synthetic database: its on-disk contract, its determinism and its expressions."""

import csv
import dataclasses
import json
import re
from collections import Counter

import cv2
import numpy as np
import openpyxl
import pytest

from mer_jax.synthetic import (
    CASME2_EMOTION_COUNTS,
    CODING_COLUMNS,
    CODING_SHEET,
    FRAMES_DIR,
    LANDMARKS_DIR,
    MANIFEST,
    SyntheticSpec,
    generate_database,
    generator,
)
from mer_jax.synthetic.action_units import parse_au_code
from mer_jax.synthetic.recordings import (
    MICRO_TIMINGS,
    database_summary,
    expression_profile,
    plan_database,
    plan_recordings,
    subject_identity,
)
from mer_jax.synthetic.render import render_frames
from mer_jax.synthetic.truth import onset_apex_truth

# Two subjects with two clips each (at 60 fps, so 12-32 frames): the whole pipeline in
# about a second.
TINY = SyntheticSpec(num_subjects=2, clips_per_subject=2, clip_count_shape=0.0, fps=60)
# No nuisance that moves landmarks, so landmark motion is the expression alone (noise,
# flicker and illumination are restored: they move no landmark).
STILL = dataclasses.replace(
    dataclasses.replace(TINY, num_subjects=3).without_nuisance(),
    noise_std=TINY.noise_std,
    flicker_std=TINY.flicker_std,
    illumination_drift=TINY.illumination_drift,
)


def _tree(root) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _coding_rows(root) -> list[tuple]:
    sheet = openpyxl.load_workbook(root / CODING_SHEET, read_only=True).worksheets[0]
    return list(sheet.iter_rows(values_only=True))


def _landmarks(root, subject: str, clip: str) -> tuple[list[str], np.ndarray]:
    with open(root / LANDMARKS_DIR / subject / f"{clip}.csv") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=np.float64)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "db"
    return generate_database(out, TINY, workers=1, progress=False)


def test_layout_and_coding_sheet(database):
    assert sorted(p.name for p in database.iterdir()) == sorted(
        [FRAMES_DIR, CODING_SHEET, LANDMARKS_DIR, MANIFEST]
    )
    header, *rows = _coding_rows(database)
    # Spelled out: the CASME II builder reads these exact names.
    assert (
        header
        == CODING_COLUMNS
        == (
            "Subject",
            "Filename",
            "OnsetFrame",
            "ApexFrame",
            "OffsetFrame",
            "Action Units",
            "Estimated Emotion",
        )
    )
    clip_dirs = sorted((database / FRAMES_DIR).glob("sub*/*"))
    assert len(rows) == len(clip_dirs) == 4
    assert sorted(d.parent.name for d in clip_dirs) == ["sub01", "sub01", "sub02", "sub02"]
    for subject, filename, onset, apex, offset, aus, emotion in rows:
        assert isinstance(subject, int) and 1 <= subject <= 2
        assert re.fullmatch(r"EP\d{2}_\d{2}f", filename)
        assert all(isinstance(v, int) for v in (onset, apex, offset))
        assert 1 <= onset < apex < offset
        assert isinstance(aus, str) and parse_au_code(aus)
        assert emotion in CASME2_EMOTION_COUNTS
        frames = sorted(
            p.name for p in (database / FRAMES_DIR / f"sub{subject:02d}" / filename).iterdir()
        )
        # Frame numbers are the original ones, not zero padded, onset..offset inclusive.
        assert frames == sorted(f"img{n}.jpg" for n in range(onset, offset + 1))


def test_landmark_sidecars_match_frames(database):
    for subject, filename, onset, _, offset, _, _ in _coding_rows(database)[1:]:
        header, table = _landmarks(database, f"sub{subject:02d}", filename)
        assert header == ["frame"] + [f"x_{i}" for i in range(68)] + [f"y_{i}" for i in range(68)]
        np.testing.assert_array_equal(table[:, 0], np.arange(onset, offset + 1))
        assert ((table[:, 1:] > 0) & (table[:, 1:] < TINY.frame_size)).all()
        xs, ys = table[:, 1:69], table[:, 69:]
        # iBUG order: the jaw runs from the image left to the right, brows above the eyes.
        assert (xs[:, 0] < xs[:, 8]).all() and (xs[:, 8] < xs[:, 16]).all()
        assert (ys[:, 19] < ys[:, 37]).all() and (ys[:, 37] < ys[:, 57]).all()


def test_manifest_records_spec(database):
    manifest = json.loads((database / MANIFEST).read_text())
    assert SyntheticSpec(**manifest["spec"]) == TINY
    assert manifest["fps"] == 60 and manifest["kind"] == "micro"
    assert manifest["counts"]["clips"] == 4
    assert manifest["counts"]["frames"] == sum(1 for _ in database.rglob("*.jpg"))


def test_same_spec_same_bytes_whatever_the_workers(database, tmp_path):
    parallel = generate_database(tmp_path / "parallel", TINY, workers=2, progress=False)
    assert _tree(parallel) == _tree(database)
    other_seed = generate_database(
        tmp_path / "seed1", dataclasses.replace(TINY, seed=1), workers=1, progress=False
    )
    reference, other = _tree(database), _tree(other_seed)
    assert other[CODING_SHEET] != reference[CODING_SHEET]

    def frames(tree: dict[str, bytes]) -> set[bytes]:
        return {data for name, data in tree.items() if name.endswith(".jpg")}

    assert not frames(other) & frames(reference)


def test_apex_displacement_in_amplitude_range(tmp_path):
    root = generate_database(tmp_path / "still", STILL, workers=1, progress=False)
    neutral = {s: subject_identity(STILL, s).landmarks for s in range(1, STILL.num_subjects + 1)}
    lo, hi = 0.5, 2.0  # the micro-expressions' peak displacement at 224 px
    plans = {(p.subject, p.filename): p for p in plan_database(STILL)}
    for subject, filename, onset, apex, _, _, _ in _coding_rows(root)[1:]:
        _, table = _landmarks(root, f"sub{subject:02d}", filename)
        points = np.stack([table[:, 1:69], table[:, 69:]], axis=-1)
        # Onset and offset show the neutral face; the true peak the full expression.
        np.testing.assert_allclose(points[0], neutral[subject], atol=2e-3)
        np.testing.assert_allclose(points[-1], neutral[subject], atol=2e-3)
        true_peak = plans[subject, filename].shown.peak
        peak = np.linalg.norm(points[true_peak - onset] - points[0], axis=1).max()
        # Landmarks sample the field, whose peak may fall between them.
        assert 0.6 * lo <= peak <= hi + 1e-3, (filename, peak)
        # The annotated apex is near the peak, as coders see it: at least 0.9 of it.
        at_apex = np.linalg.norm(points[apex - onset] - points[0], axis=1).max()
        assert at_apex >= 0.9 * peak - 1e-3, (filename, at_apex, peak)


def test_expression_profile_rises_and_falls():
    profile = expression_profile(20, 6)
    assert profile[0] == 0.0 and profile[6] == 1.0 and profile[-1] == pytest.approx(0.0)
    assert (np.diff(profile[:7]) > 0).all() and (np.diff(profile[6:]) < 0).all()


def test_pixels_move_with_the_landmarks(tmp_path):
    # Sub-pixel motion must survive rendering: optical flow between onset and apex
    # frames recovers the landmarks' motion (TV-L1 underestimates it somewhat).
    clean = dataclasses.replace(
        STILL, noise_std=0.0, flicker_std=0.0, illumination_drift=0.0, jpeg_quality=100
    )
    root = generate_database(tmp_path / "clean", clean, workers=1, progress=False)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    # Less smoothing than the default 0.15: a tight AU (the dimpler, 4 px wide with an
    # opposite push beside it) would otherwise lose half its magnitude to the regulariser,
    # which is TV-L1's doing, not the rendering's.
    tvl1.setLambda(0.5)
    for subject, filename, onset, apex, _, _, _ in _coding_rows(root)[1:]:
        clip_dir = root / FRAMES_DIR / f"sub{subject:02d}" / filename
        first, peak = (
            cv2.imread(str(clip_dir / f"img{n}.jpg"), cv2.IMREAD_GRAYSCALE) for n in (onset, apex)
        )
        flow = tvl1.calc(first, peak, None)
        _, table = _landmarks(root, f"sub{subject:02d}", filename)
        points = np.stack([table[:, 1:69], table[:, 69:]], axis=-1)
        motion = points[apex - onset] - points[0]
        # Not the inner lip line (60-67): where the lips meet, a dimpler (AU14) folds the
        # skin into the seam, and no 3 x 3 flow window resolves motion across it.
        k = int(np.argmax(np.linalg.norm(motion[:60], axis=1)))
        x, y = np.round(points[0, k]).astype(int)
        measured = flow[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 2).mean(0)
        cosine = measured @ motion[k] / (np.linalg.norm(measured) * np.linalg.norm(motion[k]))
        ratio = np.linalg.norm(measured) / np.linalg.norm(motion[k])
        assert cosine > 0.9 and 0.5 < ratio < 1.2, (filename, measured, motion[k])


def test_true_flow_carries_the_onset_onto_the_apex_and_the_landmarks():
    # Head motion and the expression; no blinks (not motion the truth follows) and no
    # noise, flicker or JPEG loss, which no flow undoes.
    spec = dataclasses.replace(
        TINY,
        blinks_per_minute=0.0,
        noise_std=0.0,
        flicker_std=0.0,
        illumination_drift=0.0,
        jpeg_quality=100,
    )
    for plan in plan_database(spec)[:2]:
        truth = onset_apex_truth(plan, spec)
        assert truth.flow.shape == (spec.frame_size, spec.frame_size, 2)
        onset, apex = (
            cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
            for image in (truth.onset, truth.apex)
        )
        ys, xs = np.mgrid[0 : spec.frame_size, 0 : spec.frame_size].astype(np.float32)
        u, v = truth.flow[..., 0], truth.flow[..., 1]
        back = cv2.remap(apex, xs + u, ys + v, cv2.INTER_LINEAR)
        inner = (slice(16, -16), slice(16, -16))
        # What is left is interpolation error.
        assert np.abs(back - onset)[inner].mean() < 0.3 * np.abs(apex - onset)[inner].mean()
        # The landmarks the generator writes move as the truth says.
        identity = subject_identity(spec, plan.subject)
        frames = render_frames(plan.recording, identity, spec, [plan.onset, plan.apex])
        start, peak = frames.true_landmarks
        at_start = cv2.remap(
            truth.flow, start[:, None, 0].astype(np.float32), start[:, None, 1].astype(np.float32),
            cv2.INTER_LINEAR,
        )[:, 0]
        np.testing.assert_allclose(start + at_start, peak, atol=0.05)


def test_macro_has_its_own_subjects_and_timing():
    macro = SyntheticSpec(kind="macro", num_subjects=2)
    assert macro.fps == 30
    for subject in (1, 2):
        micro_face = subject_identity(TINY, subject)
        macro_face = subject_identity(macro, subject)
        assert np.abs(micro_face.landmarks - macro_face.landmarks).max() > 1.0
        assert np.abs(micro_face.neutral - macro_face.neutral).mean() > 5.0
    plans = plan_database(macro)
    # Macro-expressions last 0.5-4 s.
    assert plans and all(15 <= p.num_frames <= 120 for p in plans)
    assert {p.shown.kind for p in plans} == {"macro"}


def test_emotions_follow_casme2_frequencies_subjects_differ():
    spec = SyntheticSpec(num_subjects=300, clips_per_subject=10)  # CASME II's mean: 9.8
    plans = plan_database(spec)
    counts = Counter(p.emotion for p in plans)
    total = sum(CASME2_EMOTION_COUNTS.values())
    # Pooled over subjects, the classes keep CASME II's frequencies.
    for emotion, count in CASME2_EMOTION_COUNTS.items():
        assert counts[emotion] / len(plans) == pytest.approx(count / total, abs=0.04), emotion
    per_subject = Counter(p.subject for p in plans)
    # Clip counts per subject vary as CASME II's (median 9, mean 9.8, 2..36).
    sizes = np.array(list(per_subject.values()))
    assert 8 <= np.median(sizes) <= 11 and 9 <= sizes.mean() <= 11
    assert sizes.min() <= 3 and sizes.max() >= 20
    # Most subjects show two or three of the five casme2_5class classes.
    five = {"others", "disgust", "happiness", "repression", "surprise"}
    shown = Counter(
        len({p.emotion for p in plans if p.subject == s} & five) for s in per_subject
    )
    assert shown[2] + shown[3] > 0.5 * len(per_subject), shown
    for subject in per_subject:
        names = [p.filename for p in plans if p.subject == subject]
        assert len(names) == len(set(names))
    # Switched off, every subject shows exactly clips_per_subject from the mix itself.
    even = plan_database(
        dataclasses.replace(spec, num_subjects=4, clip_count_shape=0.0)
    )
    assert set(Counter(p.subject for p in even).values()) == {10}


def test_clips_are_cut_from_recordings_with_macro_and_neutral_stretches():
    spec = SyntheticSpec(num_subjects=6)
    summary = database_summary(spec)
    assert summary["clips"] == summary["intervals"]["micro"] == len(plan_database(spec))
    # Several macro-expressions per micro-expression, as in CAS(ME)^2 and SAMM.
    assert 1.5 < summary["intervals"]["macro"] / summary["intervals"]["micro"] < 3.0
    for plan in plan_database(spec):
        recording = plan.recording
        assert 1 <= plan.onset < plan.apex < plan.offset <= recording.num_frames
        assert plan.filename.startswith(f"EP{recording.index:02d}_")
    for recording in plan_recordings(spec, 1, 10):
        expressions = recording.expressions
        # In time order, separated by at least a second of neutral face.
        for before, after in zip(expressions, expressions[1:], strict=False):
            assert after.onset - before.offset >= spec.fps
        expressed = sum(e.num_frames for e in expressions)
        assert expressed < 0.5 * recording.num_frames


def test_timing_follows_the_coding_sheets():
    spec = SyntheticSpec(num_subjects=60)
    plans = plan_database(spec)
    lengths = np.array([p.num_frames for p in plans])
    # CASME II at 200 fps: q10/q25/median/q75/q90 = 41/51/61/86/96 frames.
    np.testing.assert_allclose(
        np.quantile(lengths, [0.1, 0.25, 0.5, 0.75, 0.9]), [41, 51, 61, 86, 96], atol=5
    )
    positions = np.array([(p.shown.peak - p.onset) / (p.num_frames - 1) for p in plans])
    np.testing.assert_allclose(
        np.quantile(positions, [0.1, 0.5, 0.9]), [0.30, 0.51, 0.71], atol=0.05
    )
    # The annotated apex is off the true peak in some clips, never by much.
    off = np.array([abs(p.apex - p.shown.peak) for p in plans])
    assert (off > 0).mean() > 0.3 and np.median(off) < 10
    fixed = plan_database(dataclasses.replace(spec, num_subjects=2, timing="fixed"))
    assert {p.num_frames for p in fixed} == {round(MICRO_TIMINGS["casme2"][0][3] * 200)}


def test_a_clip_is_its_recordings_frames():
    spec = dataclasses.replace(TINY, frame_size=64)
    plan = plan_database(spec)[0]
    identity = subject_identity(spec, plan.subject)
    numbers = range(plan.onset - 3, plan.offset + 4)
    whole = render_frames(plan.recording, identity, spec, numbers)
    cut = render_frames(plan.recording, identity, spec, range(plan.onset, plan.offset + 1))
    np.testing.assert_array_equal(cut.images, whole.images[3:-3])
    np.testing.assert_array_equal(cut.landmarks, whole.landmarks[3:-3])
    # The sidecar landmarks carry the measured jitter; the truth is apart.
    error = np.linalg.norm(cut.landmarks - cut.true_landmarks, axis=-1)
    assert 0.05 < error.mean() < 1.0


def test_refuses_to_overwrite_a_database(database):
    with pytest.raises(FileExistsError, match="already holds a database"):
        generate_database(database, TINY, workers=1, progress=False)
    assert not list(database.parent.glob(".db.partial-*"))


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(generator, "render_clip", broken)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="interrupted"):
        generate_database(tmp_path / "empty", TINY, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    assert not list((tmp_path / "empty").iterdir())
    monkeypatch.undo()
    generate_database(tmp_path / "empty", TINY, workers=1, progress=False)
    assert (tmp_path / "empty" / MANIFEST).exists()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"kind": "nano"}, "'micro'"),
        ({"timing": "smic"}, "casme2, samm, fixed"),
        ({"apex_tolerance": 0.0}, "apex_tolerance"),
        ({"jpeg_quality": 0}, "jpeg_quality"),
        ({"frame_size": 32}, "frame_size"),
        ({"num_subjects": 4, "num_clips": 3}, "at least num_subjects"),
        ({"emotion_mix": "casme3"}, "casme2, megc2019_composite"),
    ],
)
def test_spec_rejects_bad_values(fields, message):
    with pytest.raises(ValueError, match=message):
        SyntheticSpec(**fields)
