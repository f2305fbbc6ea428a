"""Face alignment and dlib landmarks (mer_jax.preprocess.face)."""

import cv2
import fake_releases
import numpy as np
import pytest
import skimage.data

from data_builders.clip_builder import clip_example
from data_builders.samm import read_samm
from mer_jax.errors import UserError
from mer_jax.preprocess import (
    ClipFrames,
    ClipOptions,
    FaceLandmarker,
    NoFaceError,
    align_from_landmarks,
    clip_features,
    resize_affine,
    transform_landmarks,
    warp_crop,
)


def landmarks_with_eyes(left_eye: tuple[float, float], right_eye: tuple[float, float]):
    """68 points: the two eye contours around the given centres, the rest at the nose."""
    points = np.tile(np.mean([left_eye, right_eye], axis=0) + [0.0, 40.0], (68, 1))
    ring = 5.0 * np.stack([np.cos(np.arange(6)), np.sin(np.arange(6))], axis=1)
    ring -= ring.mean(axis=0)
    points[36:42] = np.asarray(left_eye) + ring
    points[42:48] = np.asarray(right_eye) + ring
    return points


def centroid(image: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    weights = image.astype(np.float64)
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


@pytest.mark.parametrize("crop_size", [64, 128])
def test_alignment_puts_eyes_in_place(crop_size):
    # A tilted face: the image-right eye is 30 px lower than the image-left one.
    landmarks = landmarks_with_eyes((200.0, 150.0), (290.0, 180.0))
    affine = align_from_landmarks(landmarks, crop_size)
    eyes = transform_landmarks(landmarks, affine)
    np.testing.assert_allclose(
        eyes[36:42].mean(axis=0), [0.3 * crop_size, 0.4 * crop_size], atol=1e-4
    )
    np.testing.assert_allclose(
        eyes[42:48].mean(axis=0), [0.7 * crop_size, 0.4 * crop_size], atol=1e-4
    )


@pytest.mark.parametrize("eye_gap", [40.0, 200.0])  # enlarging and shrinking transforms
def test_transform_landmarks_matches_warp(eye_gap):
    landmarks = landmarks_with_eyes((150.0, 160.0), (150.0 + eye_gap, 170.0))
    affine = align_from_landmarks(landmarks, 128)
    image = np.zeros((480, 640), np.uint8)
    dot = np.array([175.0 + 0.3 * eye_gap, 200.0])
    cv2.circle(image, tuple(int(v) for v in dot), 6, 255, thickness=-1)
    crop = warp_crop(image, affine, 128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    expected = transform_landmarks(dot[None], affine)[0]
    np.testing.assert_allclose(centroid(crop[..., 0]), expected, atol=0.5)


def test_resize_affine_matches_cv2_resize():
    # A face-cropped release frame (CASME II "Cropped" is ~170 x 140) is only resized.
    image = np.zeros((170, 140), np.uint8)
    image[60:80, 30:50] = 255
    affine = resize_affine(image.shape, 128)
    warped = warp_crop(image, affine, 128)[..., 0]
    resized = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(centroid(warped), centroid(resized), atol=0.05)
    corner = np.array([[30.0, 60.0]])  # top-left pixel centre of the square
    resized_corner = np.argwhere(resized > 127).min(axis=0)[::-1]
    np.testing.assert_allclose(transform_landmarks(corner, affine)[0], resized_corner, atol=1.0)


@pytest.fixture(scope="module")
def landmarker():
    return FaceLandmarker()


def test_dlib_finds_astronaut_face(landmarker):
    image = skimage.data.astronaut()
    landmarks = landmarker(image, source="astronaut.png")
    assert landmarks.shape == (68, 2) and landmarks.dtype == np.float32
    eyes_y = landmarks[36:48, 1].mean()
    nose_tip_y = landmarks[30, 1]
    mouth_y = landmarks[48:68, 1].mean()
    assert eyes_y < nose_tip_y < mouth_y
    assert landmarks[36:42, 0].mean() < landmarks[42:48, 0].mean()
    # Grayscale frames (SAMM) go through the same path.
    gray = landmarker(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), source="astronaut gray")
    assert np.abs(gray - landmarks).mean() < 2.0


def test_dlib_on_aligned_crop_agrees_with_transformed_landmarks(landmarker):
    image = skimage.data.astronaut()
    landmarks = landmarker(image, source="astronaut.png")
    affine = align_from_landmarks(landmarks, 64)
    on_crop = landmarker(warp_crop(image, affine, 64), source="astronaut crop")
    assert np.abs(on_crop - transform_landmarks(landmarks, affine)).mean() < 2.0


def test_blank_image_names_the_source(landmarker):
    with pytest.raises(NoFaceError, match=r"no face found in sub01/EP02_01f/img46\.jpg"):
        landmarker(np.zeros((120, 160), np.uint8), source="sub01/EP02_01f/img46.jpg")


def test_face_pipeline_on_an_animated_photograph(tmp_path, landmarker):
    """The astronaut moving by a known sub-pixel shift, as a grayscale SAMM clip: dlib
    finds the face on the onset, every frame is cut with the onset's alignment, and the
    onset->apex flow points where the face moved."""
    fake_releases.make_samm(tmp_path)
    record = read_samm(tmp_path).records[0]  # onset 5562, apex one frame later
    crop = 64
    example = clip_example(record, ClipOptions(crop_size=crop, flow_size=16, flow_method="dis"), 0)

    onset_frame = cv2.imread(str(record.frame_path(record.onset)), cv2.IMREAD_GRAYSCALE)
    detected = landmarker(onset_frame, source="onset frame")
    affine = align_from_landmarks(detected, crop)
    landmarks = example["landmarks_onset"]
    np.testing.assert_allclose(landmarks, transform_landmarks(detected, affine), atol=1e-3)
    # Plausible: eyes level at the canonical spots, nose below them, mouth below the nose,
    # the jaw spanning about twice the eye distance.
    np.testing.assert_allclose(landmarks[36:42].mean(axis=0), [0.3 * crop, 0.4 * crop], atol=0.01)
    np.testing.assert_allclose(landmarks[42:48].mean(axis=0), [0.7 * crop, 0.4 * crop], atol=0.01)
    assert 0.4 * crop < landmarks[30, 1] < landmarks[48:68, 1].mean() < crop
    assert 1.5 < (landmarks[16, 0] - landmarks[0, 0]) / (0.4 * crop) < 2.6
    np.testing.assert_array_equal(example["onset_image"], warp_crop(onset_frame, affine, crop))

    steps = record.frame_numbers.index(record.apex)
    expected = affine[:, :2] @ np.multiply(fake_releases.SAMM_SHIFT, steps)
    flow = example["flow"][3:-3, 3:-3].astype(np.float32).reshape(-1, 2).mean(axis=0)
    cosine = flow @ expected / (np.linalg.norm(flow) * np.linalg.norm(expected))
    assert cosine > 0.95, (flow, expected)
    assert 0.7 < np.linalg.norm(flow) / np.linalg.norm(expected) < 1.3


def astronaut_clip(folder, numbers, frame_of=lambda number, face: face) -> ClipFrames:
    """A clip of the astronaut (256 px, a 62 px face), frame n as `frame_of(n, face)`."""
    folder.mkdir(parents=True, exist_ok=True)
    face = cv2.resize(skimage.data.astronaut()[:400, 60:460], (256, 256), cv2.INTER_AREA)
    for number in numbers:
        image = cv2.cvtColor(frame_of(number, face), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"img{number}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 98])
    paths = tuple(folder / f"img{number}.jpg" for number in numbers)
    return ClipFrames("astronaut", tuple(numbers), paths, numbers[0], numbers[3], numbers[-1])


@pytest.mark.parametrize("crop", [64, 128])
def test_a_static_face_has_the_same_stored_landmarks_on_every_frame(tmp_path, crop):
    """No motion, no landmark motion: onset, apex and stored frames come from one
    pipeline at one resolution (apex landmarks used to come from the 128 px crop and the
    onset's from the raw frame: 2.0 px apart on this clip)."""
    clip = astronaut_clip(tmp_path, list(range(10, 18)))
    options = ClipOptions(crop_size=crop, flow_size=16, flow_method="dis", num_frames=4)
    features = clip_features(clip, options)
    onset = features["landmarks_onset"]
    apex_motion = np.linalg.norm(features["landmarks_apex"] - onset, axis=1).mean()
    frames_motion = np.linalg.norm(features["landmarks_frames"] - onset, axis=2).mean()
    assert apex_motion < 0.1 and frames_motion < 0.1, (apex_motion, frames_motion)
    # The landmarks are the face's: eyes where the alignment put them.
    np.testing.assert_allclose(onset[36:42].mean(axis=0), [0.3 * crop, 0.4 * crop], atol=0.01)
    assert 0.4 * crop < onset[30, 1] < onset[48:68, 1].mean() < crop


def test_a_face_missed_on_the_onset_is_looked_for_in_the_next_frames(tmp_path):
    # Motion blur on the onset: dlib's detector finds nothing there, the frame after it
    # gives the face box, and the onset's own landmarks are predicted inside that box.
    def blurred_onset(number, face):
        return cv2.GaussianBlur(face, (0, 0), 3) if number == 10 else face

    clip = astronaut_clip(tmp_path / "blur", list(range(10, 18)), blurred_onset)
    landmarker = FaceLandmarker()
    assert landmarker.detect(cv2.imread(str(clip.frame_paths[0]))) is None
    options = ClipOptions(crop_size=64, flow_size=16, flow_method="dis", num_frames=0)
    features = clip_features(clip, options)
    eyes = features["landmarks_onset"][36:48].reshape(2, 6, 2).mean(axis=1)
    np.testing.assert_allclose(eyes, [[0.3 * 64, 0.4 * 64], [0.7 * 64, 0.4 * 64]], atol=0.01)
    # The same face predicted on a sharp frame: within dlib's blur error (1.5 px here),
    # where a face box off the face would put the points tens of pixels away.
    sharp = features["landmarks_apex"]
    assert np.linalg.norm(sharp - features["landmarks_onset"], axis=1).mean() < 3.0

    blank = astronaut_clip(tmp_path / "blank", list(range(10, 18)), lambda n, f: f * 0 + 128)
    with pytest.raises(UserError, match=r"no face found in frames \[10, 11, 12, 13\] of .*blank"):
        clip_features(blank, options)
