"""Face alignment: 68-point landmarks, a similarity transform to a canonical crop.

Landmarks follow the iBUG 300-W / dlib 68-point numbering (0-based), as (x, y) pixel
coordinates: points 36-41 outline the eye on the image's left (the subject's right
eye), 42-47 the other eye.

The canonical crop of side C puts both eye centres on a horizontal line 0.4*C from
the top, 0.4*C apart and centred horizontally (x = 0.3*C and 0.7*C). One transform,
estimated on the onset frame, is applied to every frame of a clip so that the
alignment itself adds no motion between frames.
"""

import functools
import importlib.util
from pathlib import Path

import cv2
import numpy as np

from mer_jax.landmarks import NUM_LANDMARKS

_IMAGE_LEFT_EYE = slice(36, 42)
_IMAGE_RIGHT_EYE = slice(42, 48)
EYE_LINE = 0.4  # eye line height, as a fraction of the crop side
EYE_DISTANCE = 0.4  # distance between the eye centres, as a fraction of the crop side


class NoFaceError(ValueError):
    """Raised when the face detector finds no face in an image."""


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected 68 (x, y) landmarks of shape (68, 2); got {points.shape}")
    return points


def align_from_landmarks(landmarks68: np.ndarray, crop_size: int) -> np.ndarray:
    """The similarity transform that maps a face onto the canonical crop.

    Args:
        landmarks68: (68, 2) landmark (x, y) coordinates in the source image.
        crop_size: side C of the square crop.

    Returns:
        float64 (2, 3) affine matrix for `warp_crop` / `transform_landmarks`: rotation
        (eyes level), uniform scale (eye centres 0.4*C apart) and translation.
    """
    points = _check_landmarks(landmarks68)
    source_left = complex(*points[_IMAGE_LEFT_EYE].mean(axis=0))
    source_right = complex(*points[_IMAGE_RIGHT_EYE].mean(axis=0))
    if abs(source_right - source_left) < 1e-6:
        raise ValueError("the two eye centres coincide; these landmarks cannot align a face")
    half_gap = 0.5 * EYE_DISTANCE * crop_size
    target_left = complex(0.5 * crop_size - half_gap, EYE_LINE * crop_size)
    target_right = complex(0.5 * crop_size + half_gap, EYE_LINE * crop_size)
    # A 2-D similarity is z -> a*z + b over complex numbers: |a| scales, arg(a) rotates.
    a = (target_right - target_left) / (source_right - source_left)
    b = target_left - a * source_left
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])


def _scale_affine(source_hw: tuple[int, int], target_hw: tuple[int, int]) -> np.ndarray:
    """The affine matrix of `cv2.resize` from source_hw to target_hw (pixel centres kept)."""
    scale_x = target_hw[1] / source_hw[1]
    scale_y = target_hw[0] / source_hw[0]
    return np.array([[scale_x, 0.0, 0.5 * scale_x - 0.5], [0.0, scale_y, 0.5 * scale_y - 0.5]])


def resize_affine(image_shape: tuple[int, ...], crop_size: int) -> np.ndarray:
    """The affine matrix that stretches a whole (already face-cropped) frame to C x C.

    Pixel centres map onto pixel centres, exactly as `cv2.resize` does, so landmarks
    transformed with this matrix stay on the face in the resized crop.
    """
    return _scale_affine(image_shape[:2], (crop_size, crop_size))


def to_rgb(image: np.ndarray) -> np.ndarray:
    """A 3-channel uint8 view of a grayscale (H, W) / (H, W, 1) or RGB (H, W, 3) image."""
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image; got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        # Grayscale releases (SAMM) are replicated to 3 channels so every dataset
        # yields crops of one shape.
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected a grayscale or RGB image; got shape {image.shape}")


def warp_crop(image: np.ndarray, affine: np.ndarray, crop_size: int) -> np.ndarray:
    """Applies `affine` (source -> crop coordinates) and returns the C x C x 3 uint8 crop.

    When the transform shrinks the face, the frame is first area-resized to the target
    scale: bilinear sampling alone would alias (CASME II faces shrink ~2.5x into a
    128 px crop) and the aliasing pattern changes with sub-pixel motion, which is
    exactly what the flow must measure.
    Pixels that fall outside the source repeat its border: a constant fill would put a
    hard edge into the crop.
    """
    rgb = to_rgb(image)
    matrix = np.asarray(affine, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 1.0:
        source_hw = rgb.shape[:2]
        reduced_hw = (max(1, round(source_hw[0] * scale)), max(1, round(source_hw[1] * scale)))
        rgb = cv2.resize(rgb, reduced_hw[::-1], interpolation=cv2.INTER_AREA)
        # Crop <- source becomes crop <- source <- reduced: compose with the inverse resize.
        inverse = cv2.invertAffineTransform(_scale_affine(source_hw, reduced_hw))
        matrix = matrix @ np.vstack([inverse, [0.0, 0.0, 1.0]])
    return cv2.warpAffine(
        rgb,
        matrix,
        (crop_size, crop_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def transform_landmarks(landmarks: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Maps (N, 2) source (x, y) points into crop coordinates; returns float32 (N, 2)."""
    points = np.asarray(landmarks, dtype=np.float64)
    matrix = np.asarray(affine, dtype=np.float64)
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def dlib_landmark_model_path() -> Path:
    """Path of the dlib 68-point model shipped by the face-recognition-models package."""
    # Located without importing the package: its __init__ needs pkg_resources,
    # which recent setuptools no longer provides.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the dlib 68-point landmark model comes from the face-recognition-models "
            "package, which is not installed: pip install face-recognition-models"
        )
    path = (
        Path(spec.submodule_search_locations[0])
        / "models"
        / "shape_predictor_68_face_landmarks.dat"
    )
    if not path.is_file():
        raise FileNotFoundError(f"dlib landmark model missing at {path}; reinstall the package")
    return path


class FaceLandmarker:
    """dlib frontal face detector + 68-point shape predictor.

    Loading the model is slow next to one prediction: make one per process and reuse it
    (`shared_landmarker`).
    """

    def __init__(self, model_path: str | Path | None = None, upsample: int = 1) -> None:
        """Loads the detector and the predictor.

        Args:
            model_path: the shape predictor file; default: the one from
                face-recognition-models.
            upsample: how many times the detector doubles the image first. Once finds
                faces down to ~40 px wide (an aligned 64 px crop), where dlib's
                native minimum is ~80 px.
        """
        import dlib  # Imported here: only builds without a landmarks sidecar need it.

        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_path or dlib_landmark_model_path()))
        self._upsample = upsample

    def detect(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """(left, top, right, bottom) of the largest face in `image`, or None."""
        faces = self._detector(to_rgb(image), self._upsample)
        if len(faces) == 0:
            return None
        box = max(faces, key=lambda face: face.width() * face.height())
        return box.left(), box.top(), box.right(), box.bottom()

    def predict(self, image: np.ndarray, face_box: tuple[int, int, int, int]) -> np.ndarray:
        """float32 (68, 2) (x, y) landmarks of the face inside `face_box` of `image`.

        The shape predictor regresses the points relative to the box, so one box kept for
        every frame of a clip measures the face's own motion, not the detector's jitter.
        """
        box = self._dlib.rectangle(*(int(round(value)) for value in face_box))
        shape = self._predictor(to_rgb(image), box)
        return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float32)

    def __call__(
        self,
        image: np.ndarray,
        *,
        source: str,
        face_box: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """68 landmarks of the largest face in `image`.

        Args:
            image: uint8 grayscale or RGB image.
            source: what the image is (a file path, a clip and frame), quoted in errors.
            face_box: (left, top, right, bottom) of a face whose position is already
                known (a face-cropped release); skips detection.

        Returns:
            float32 (68, 2) (x, y) pixel coordinates in `image`.

        Raises:
            NoFaceError: the detector found no face.
        """
        box = self.detect(image) if face_box is None else face_box
        if box is None:
            raise NoFaceError(
                f"no face found in {source} ({image.shape[1]}x{image.shape[0]} pixels). "
                "Check that the frame shows a frontal face, or provide a landmarks "
                "sidecar CSV for this clip."
            )
        return self.predict(image, box)


@functools.cache
def shared_landmarker() -> FaceLandmarker:
    """This process's one `FaceLandmarker`, loaded on first use (worker processes each
    load their own)."""
    return FaceLandmarker()
