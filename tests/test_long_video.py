"""The long-video motion extractor on small generated videos: a face that leaves and
returns, moves far, never shows, a file cut short, frame folders in steps."""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from mer_jax.errors import UserError
from mer_jax.preprocess.face import NoFaceError
from mer_jax.preprocess.long_video import (
    MotionSpec,
    folder_chunks,
    motion_peak,
    moved_far,
    video_chunks,
    video_motion,
)
from mer_jax.preprocess.video import FrameChunk
from mer_jax.synthetic.demo import write_recording_video
from mer_jax.synthetic.recordings import (
    SyntheticSpec,
    all_recordings,
    plan_database,
    subject_identity,
)
from mer_jax.synthetic.render import render_frames

SPEC = MotionSpec(step_ms=80, span=2, crop_size=32, grid=4)
FPS = 200  # the synthetic recordings'
STEP = SPEC.step_frames(FPS)


@pytest.fixture(scope="module")
def face_gone_video(tmp_path_factory) -> Path:
    """4 s of a synthetic face at 200 fps, gone from 1.5 s to 2.5 s."""
    path = tmp_path_factory.mktemp("videos") / "gone.avi"
    return write_recording_video(path, 4.0, faceless=[(1.5, 2.5)])


def test_spec_sizes_from_a_build_and_bad_specs():
    assert STEP == 16 and MotionSpec().step_frames(30.0) == 2
    metadata = {"fps": 200, "step_frames": 16, "span": 3, "crop_size": 48, "grid": 6,
                "flow_method": "dis", "generator_version": 2}
    assert MotionSpec.from_metadata(metadata) == MotionSpec(80, 3, 48, 6, "dis")
    with pytest.raises(ValueError, match="flow_method"):
        MotionSpec(flow_method="magic")
    with pytest.raises(ValueError, match="at least 1"):
        MotionSpec(span=0)


def test_a_face_that_leaves_and_returns_is_a_gap_with_a_note(face_gone_video):
    found = video_motion(video_chunks(face_gone_video, STEP), SPEC)
    assert found.frame_numbers.tolist() == list(range(0, 800, STEP))
    count = len(found.frame_numbers) - SPEC.span
    assert found.motion.shape == (count, 4, 4, 2) and found.motion.dtype == np.float16
    assert found.valid.shape == (count,)
    assert len(found.notes) == 1, found.notes
    lost, back = (int(x) for x in found.notes[0].replace(",", "").split() if x.isdigit())
    assert found.notes[0].startswith("face lost at frame")
    # Seen at a check each second: lost after the last frame it was seen, back at the
    # first sampled frame that shows it.
    assert 200 <= lost <= 300 and back == 512
    starts, ends = found.frame_numbers[:count], found.frame_numbers[SPEC.span :]
    touches = (ends >= lost) & (starts < back)
    np.testing.assert_array_equal(found.valid, ~touches)
    assert not found.motion[~found.valid].any()
    # A gap is zero motion; the rest is the face's own (small) motion.
    assert np.abs(found.motion[found.valid].astype(np.float32)).max() < 3.0


def test_a_face_that_moves_far_is_aligned_anew():
    spec = SyntheticSpec(num_subjects=1, clips_per_subject=1, frame_size=96).without_nuisance()
    recording = all_recordings(spec)[0]
    numbers = np.arange(1, 60 * STEP, STEP)
    rendered = render_frames(recording, subject_identity(spec, recording.subject), spec, numbers)
    images, landmarks = rendered.images.copy(), rendered.landmarks.copy()
    # From sample 36 (a check: one each 12 samples) the head sits 24 px to the right,
    # over half the eye distance.
    images[36:] = np.roll(images[36:], 24, axis=2)
    landmarks[36:, :, 0] += 24
    assert moved_far(landmarks[0], landmarks[36]) and not moved_far(landmarks[0], landmarks[35])
    chunks = [FrameChunk(numbers[i : i + 16], images[i : i + 16], landmarks[i : i + 16])
              for i in range(0, 60, 16)]
    found = video_motion(chunks, SPEC, locate_face=lambda image: pytest.fail("landmarks known"))
    assert found.notes == [f"face moved far at frame {numbers[36]}: aligned anew there"]
    assert found.valid.tolist() == [i not in (34, 35) for i in range(58)]
    # Aligned anew, the moved head adds no motion after the jump.
    assert np.abs(found.motion[36:].astype(np.float32)).max() < 0.5


def test_moved_far_by_scale_and_rotation():
    face = np.zeros((68, 2))
    face[36:42] = (30.0, 40.0)
    face[42:48] = (70.0, 40.0)
    assert not moved_far(face, face + 3.0)
    assert moved_far(face, face + (21.0, 0.0)) and not moved_far(face, face + (19.0, 0.0))
    assert moved_far(face, (face - 50.0) * 1.3 + 50.0)
    assert not moved_far(face, (face - 50.0) * 1.2 + 50.0)
    angle = math.radians(20)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    assert moved_far(face, (face - 50.0) @ rotation.T + 50.0)


def test_no_face_at_all_is_one_line(tmp_path):
    path = write_recording_video(tmp_path / "empty_room.avi", 1.0, faceless=[(0.0, 1.0)])
    with pytest.raises(UserError, match="no face found in any of the 13 sampled frames") as error:
        video_motion(video_chunks(path, STEP), SPEC)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_truncated_file_gives_its_decodable_frames_and_a_note(face_gone_video, tmp_path):
    cut = tmp_path / "cut.avi"
    data = face_gone_video.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    found = video_motion(video_chunks(cut, STEP), SPEC)
    assert 0 < found.frame_numbers[-1] < 400
    assert found.notes[-1].startswith("the file ended early:")
    assert "of the 800 its container announces" in found.notes[-1]
    assert found.valid.all()
    # Nothing decodable: the reader's one line.
    cut.write_bytes(data[:300])
    with pytest.raises(UserError, match="cannot"):
        video_motion(video_chunks(cut, STEP), SPEC)


def test_frame_folders_in_steps_and_chunks(tmp_path):
    spec = SyntheticSpec(num_subjects=1, clips_per_subject=1, frame_size=96)
    recording = all_recordings(spec)[0]
    numbers = np.arange(1, 41)
    rendered = render_frames(recording, subject_identity(spec, recording.subject), spec, numbers)
    frames = []
    for number, image in zip(numbers, rendered.images, strict=True):
        path = tmp_path / f"img{number}.png"
        cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        frames.append((int(number), path))
    source = folder_chunks(frames[::-1], step=4, chunk=3)
    chunks = list(source)
    assert [c.numbers.tolist() for c in chunks] == [[1, 5, 9], [13, 17, 21], [25, 29, 33], [37]]
    np.testing.assert_array_equal(chunks[1].images[0], rendered.images[12])
    found = video_motion(source, SPEC)
    assert found.frame_numbers.tolist() == list(range(1, 41, 4)) and found.valid.all()
    assert found.notes == []


def test_the_motion_peak_of_a_clip_is_near_its_apex_not_its_middle():
    spec = SyntheticSpec(num_subjects=4, clips_per_subject=4)
    plan = plan_database(spec)[10]
    recording = next(
        r for r in all_recordings(spec)
        if r.subject == plan.subject and any(e.onset == plan.onset for e in r.expressions)
    )
    numbers = np.arange(plan.onset, plan.offset + 1)
    rendered = render_frames(recording, subject_identity(spec, recording.subject), spec, numbers)
    chunks = [FrameChunk(numbers[i : i + 16], rendered.images[i : i + 16]) for i in
              range(0, len(numbers), 16)]
    # The onset's face from the generator, the others never looked for.
    faces = iter([rendered.landmarks[0]])
    peak = motion_peak(chunks, lambda image: next(faces))
    middle = (plan.onset + plan.offset) // 2
    # Measured: apex 17 frames after the onset, middle 26, peak 13.
    assert abs(peak - plan.apex) <= 5 < abs(middle - plan.apex)
    with pytest.raises(NoFaceError, match="no face found in any frame of the clip"):
        motion_peak(chunks, lambda image: None)
