"""Procedural identities: a 68-point face shape per subject and its rendered neutral face.

A subject is a perturbed copy of the mean iBUG 68-point shape (face width, chin
length, eye size and spacing, brow height, nose and mouth geometry) placed in
the frame with a small roll, plus an appearance (skin tone, skin texture, hair,
iris colour, lighting). The neutral face is rendered once per subject at twice
the frame resolution and area-downsampled, so edges are anti-aliased and the
warps that later animate it move band-limited content: that is what lets
sub-pixel micro-expression motion survive into the frames.

Images here are float32 BGR in [0, 255] (OpenCV's channel order, so frames go
to `cv2.imencode` without a conversion).
"""

import dataclasses

import cv2
import numpy as np

# Mean iBUG/dlib 68-point shape (OpenFace's `align_dlib` template, Apache-2.0),
# in units of the landmark bounding box; only its proportions are used.
_MEAN_SHAPE = np.array(
    [
        (0.0792, 0.3392), (0.0829, 0.4570), (0.0968, 0.5756), (0.1221, 0.6919),
        (0.1687, 0.8003), (0.2398, 0.8957), (0.3257, 0.9771), (0.4223, 1.0433),
        (0.5318, 1.0608), (0.6413, 1.0398), (0.7381, 0.9723), (0.8244, 0.8896),
        (0.8948, 0.7925), (0.9394, 0.6815), (0.9611, 0.5622), (0.9706, 0.4418),
        (0.9712, 0.3221), (0.1638, 0.2492), (0.2178, 0.2043), (0.2913, 0.1924),
        (0.3675, 0.2036), (0.4393, 0.2331), (0.5864, 0.2281), (0.6602, 0.1959),
        (0.7375, 0.1824), (0.8132, 0.1928), (0.8708, 0.2353), (0.5153, 0.3186),
        (0.5162, 0.3962), (0.5171, 0.4738), (0.5182, 0.5532), (0.4337, 0.6041),
        (0.4755, 0.6208), (0.5207, 0.6343), (0.5659, 0.6188), (0.6071, 0.6016),
        (0.2524, 0.3311), (0.2987, 0.3026), (0.3557, 0.3030), (0.4037, 0.3387),
        (0.3525, 0.3500), (0.2968, 0.3505), (0.6313, 0.3341), (0.6791, 0.2965),
        (0.7360, 0.2947), (0.7829, 0.3213), (0.7403, 0.3418), (0.6850, 0.3437),
        (0.3532, 0.7462), (0.4146, 0.7191), (0.4777, 0.7068), (0.5227, 0.7171),
        (0.5698, 0.7054), (0.6352, 0.7157), (0.6995, 0.7394), (0.6394, 0.8052),
        (0.5764, 0.8354), (0.5254, 0.8417), (0.4764, 0.8375), (0.4138, 0.8100),
        (0.3801, 0.7500), (0.4780, 0.7451), (0.5234, 0.7489), (0.5711, 0.7433),
        (0.6724, 0.7442), (0.5725, 0.7766), (0.5240, 0.7834), (0.4776, 0.7785),
    ]
)  # fmt: skip

# iBUG 68-point groups. "Right" is the subject's right, i.e. the image left.
JAW = np.arange(0, 17)
RIGHT_BROW = np.arange(17, 22)
LEFT_BROW = np.arange(22, 27)
NOSE_BRIDGE = np.arange(27, 31)
NOSTRILS = np.arange(31, 36)
RIGHT_EYE = np.arange(36, 42)
LEFT_EYE = np.arange(42, 48)
OUTER_LIPS = np.arange(48, 60)
INNER_LIPS = np.arange(60, 68)
# Each eye's outline split into the lids, corner to corner from the image left.
RIGHT_UPPER_LID = np.array([36, 37, 38, 39])
RIGHT_LOWER_LID = np.array([36, 41, 40, 39])
LEFT_UPPER_LID = np.array([42, 43, 44, 45])
LEFT_LOWER_LID = np.array([42, 47, 46, 45])

# The layout the builder expects: eye centres ~50 px apart in a 224 frame.
REFERENCE_FRAME_SIZE = 224
REFERENCE_IOD = 50.0
_SUPERSAMPLE = 2


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: compare by identity
class Identity:
    """One synthetic subject: where its features are and what its neutral face looks like.

    Attributes:
        landmarks: (68, 2) float64 neutral landmark positions (x, y) in frame pixels.
        neutral: (frame_size, frame_size, 3) float32 BGR neutral face in [0, 255].
    """

    landmarks: np.ndarray
    neutral: np.ndarray


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Returns the (2, 2) centres of the right (image-left) and left eye."""
    return np.stack([landmarks[RIGHT_EYE].mean(0), landmarks[LEFT_EYE].mean(0)])


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Returns the face's horizontal and downward unit axes and its inter-ocular distance.

    Expression directions are defined in these axes, so they follow the face's roll.
    """
    right, left = eye_centres(landmarks)
    across = left - right
    iod = float(np.hypot(*across))
    e_x = across / iod
    e_y = np.array([-e_x[1], e_x[0]])
    return e_x, e_y, iod


def smooth_curve(points: np.ndarray, *, closed: bool = False, samples: int = 8) -> np.ndarray:
    """Catmull-Rom curve through `points` (n, 2), `samples` points per segment.

    Landmarks are sparse; features drawn through them as polygons would show corners.
    """
    pts = np.asarray(points, dtype=np.float64)
    if closed:
        padded = np.concatenate([pts[-1:], pts, pts[:2]])
    else:
        padded = np.concatenate([2 * pts[:1] - pts[1:2], pts, 2 * pts[-1:] - pts[-2:-1]])
    t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
    t2, t3 = t * t, t * t * t
    segments = []
    for i in range(len(padded) - 3):
        p0, p1, p2, p3 = padded[i : i + 4]
        segments.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t2
                + (3 * p1 - p0 - 3 * p2 + p3) * t3
            )
        )
    curve = np.concatenate(segments)
    return curve if closed else np.concatenate([curve, pts[-1:]])


def make_identity(rng: np.random.Generator, frame_size: int) -> Identity:
    """Draws one subject (shape, placement, appearance) and renders its neutral face."""
    landmarks = _place_in_frame(_subject_shape(rng), rng, frame_size)
    neutral = _render_neutral(landmarks, rng, frame_size)
    return Identity(landmarks=landmarks, neutral=neutral)


def _canonical_shape() -> np.ndarray:
    """The mean shape levelled and scaled so the eye centres sit at (-0.5, 0) and (0.5, 0)."""
    e_x, e_y, iod = face_axes(_MEAN_SHAPE)
    centred = _MEAN_SHAPE - eye_centres(_MEAN_SHAPE).mean(0)
    shape = np.stack([centred @ e_x, centred @ e_y], axis=1) / iod
    # The mean shape has the lips slightly apart; a neutral face has them closed.
    upper_inner, lower_inner = shape[[61, 62, 63]], shape[[67, 66, 65]]
    gap = (lower_inner[:, 1] - upper_inner[:, 1]).mean()
    shape[[67, 66, 65]] = upper_inner + [0.0, 0.01]
    shape[55:60, 1] -= 0.8 * gap
    return shape


_CANONICAL = _canonical_shape()


def _scale_group(shape: np.ndarray, idx: np.ndarray, sx: float, sy: float) -> None:
    centre = shape[idx].mean(0)
    shape[idx] = centre + (shape[idx] - centre) * [sx, sy]


def _subject_shape(rng: np.random.Generator) -> np.ndarray:
    """Perturbs the canonical shape into one subject's geometry (units: inter-ocular distance)."""
    shape = _CANONICAL.copy()
    lower = shape[:, 1] > 0.05
    # Face proportions: width of the jaw and length of the lower face.
    shape[JAW, 0] *= rng.uniform(0.92, 1.1)
    shape[lower, 1] *= rng.uniform(0.92, 1.08)
    chin = np.arange(5, 12)
    shape[chin, 0] *= rng.uniform(0.88, 1.08)
    shape[chin, 1] += rng.normal(0.0, 0.03) * np.cos(np.linspace(-1.2, 1.2, 7))
    # Features: eye size and opening (each eye about its own centre), brows, nose, mouth.
    eye_scale, eye_open = rng.uniform(0.88, 1.12), rng.uniform(0.8, 1.2)
    for eye in (RIGHT_EYE, LEFT_EYE):
        _scale_group(shape, eye, eye_scale, eye_scale * eye_open)
    brows = np.concatenate([RIGHT_BROW, LEFT_BROW])
    shape[brows, 1] += rng.uniform(-0.06, 0.06)
    shape[[18, 19, 24, 25], 1] -= rng.uniform(-0.01, 0.04)  # brow arch
    nose = np.arange(28, 36)
    shape[nose, 1] = shape[27, 1] + (shape[nose, 1] - shape[27, 1]) * rng.uniform(0.9, 1.1)
    _scale_group(shape, NOSTRILS, rng.uniform(0.85, 1.2), 1.0)
    mouth = np.arange(48, 68)
    _scale_group(shape, mouth, rng.uniform(0.88, 1.15), 1.0)
    shape[mouth, 1] += rng.normal(0.0, 0.03)
    shape[[49, 50, 51, 52, 53], 1] -= rng.uniform(-0.015, 0.03)  # upper lip thickness
    shape[55:60, 1] += rng.uniform(-0.03, 0.03)  # lower lip thickness
    # No face is symmetric: small independent jitter on every point.
    shape += rng.normal(0.0, 0.008, shape.shape)
    return shape


def _place_in_frame(shape: np.ndarray, rng: np.random.Generator, frame_size: int) -> np.ndarray:
    """Scales, rolls and positions a shape so its eye centres sit ~50 px apart in a 224 frame."""
    iod = REFERENCE_IOD * frame_size / REFERENCE_FRAME_SIZE * rng.uniform(0.9, 1.1)
    roll = np.deg2rad(np.clip(rng.normal(0.0, 1.5), -4.0, 4.0))
    rotation = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
    eye_mid = frame_size * np.array(
        [0.5 + rng.uniform(-0.02, 0.02), 0.42 + rng.uniform(-0.02, 0.02)]
    )
    return eye_mid + (shape * iod) @ rotation.T


# --------------------------------------------------------------------------- rendering

_SKIN_LIGHT = np.array([236.0, 200.0, 178.0])  # RGB
_SKIN_DARK = np.array([92.0, 62.0, 48.0])
_IRIS_COLOURS = np.array(
    [(55, 38, 28), (96, 62, 38), (120, 96, 58), (84, 104, 76), (78, 106, 136), (108, 112, 118)],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [(22, 18, 16), (48, 34, 24), (84, 58, 36), (120, 88, 52), (60, 56, 54)], dtype=np.float64
)


class _Canvas:
    """A supersampled float32 BGR image with helpers to draw soft masks in frame coordinates."""

    def __init__(self, frame_size: int, iod: float) -> None:
        self.size = frame_size * _SUPERSAMPLE
        self.iod = iod * _SUPERSAMPLE
        self.image = np.zeros((self.size, self.size, 3), np.float32)

    def to_hi(self, points: np.ndarray) -> np.ndarray:
        # Pixel centres: frame pixel i spans [i - 0.5, i + 0.5].
        return (np.asarray(points, np.float64) + 0.5) * _SUPERSAMPLE - 0.5

    def _blank(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.uint8)

    @staticmethod
    def _fixed(points_hi: np.ndarray) -> np.ndarray:
        # cv2 draws with 4 fractional bits, so shapes land at sub-pixel positions.
        return np.round(points_hi * 16).astype(np.int32).reshape(-1, 1, 2)

    def _finish(self, mask: np.ndarray, blur_iod: float) -> np.ndarray:
        soft = mask.astype(np.float32) / 255.0
        if blur_iod > 0:
            # Blur only around the drawn shape: the rest of the canvas stays zero anyway.
            sigma = blur_iod * self.iod
            x, y, w, h = cv2.boundingRect(mask)
            pad = int(4 * sigma) + 1
            rows = slice(max(y - pad, 0), min(y + h + pad, self.size))
            cols = slice(max(x - pad, 0), min(x + w + pad, self.size))
            soft[rows, cols] = cv2.GaussianBlur(soft[rows, cols], (0, 0), sigma)
        return soft

    def polygon(self, points: np.ndarray, blur_iod: float = 0.0) -> np.ndarray:
        mask = self._blank()
        cv2.fillPoly(mask, [self._fixed(self.to_hi(points))], 255, cv2.LINE_AA, shift=4)
        return self._finish(mask, blur_iod)

    def polyline(self, points: np.ndarray, width_iod: float, blur_iod: float = 0.0) -> np.ndarray:
        mask = self._blank()
        thickness = max(1, round(width_iod * self.iod))
        pts = self._fixed(self.to_hi(points))
        cv2.polylines(mask, [pts], False, 255, thickness, cv2.LINE_AA, shift=4)
        return self._finish(mask, blur_iod)

    def ellipse(
        self, centre: np.ndarray, axes_iod: tuple[float, float], angle: float, blur_iod: float = 0
    ) -> np.ndarray:
        mask = self._blank()
        c = self.to_hi(centre)
        cv2.ellipse(
            mask,
            (round(c[0] * 16), round(c[1] * 16)),
            (round(axes_iod[0] * self.iod * 16), round(axes_iod[1] * self.iod * 16)),
            angle,
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
            shift=4,
        )
        return self._finish(mask, blur_iod)

    @staticmethod
    def _support(mask: np.ndarray) -> tuple[slice, slice]:
        # Most features cover a small part of the canvas; blending only there is much cheaper.
        x, y, w, h = cv2.boundingRect((mask > 1e-4).astype(np.uint8))
        return slice(y, y + h), slice(x, x + w)

    def paint(self, mask: np.ndarray, colour: np.ndarray) -> None:
        """Alpha-blends `colour` (a BGR triple or a full-canvas image) where `mask` is on."""
        roi = self._support(mask)
        colour = np.asarray(colour, np.float32)
        if colour.ndim == 3:
            colour = colour[roi]
        alpha = mask[roi][..., None]
        self.image[roi] += alpha * (colour - self.image[roi])

    def shade(self, mask: np.ndarray, amount: float) -> None:
        """Darkens (amount > 0) or brightens (amount < 0) under `mask`, keeping the texture."""
        roi = self._support(mask)
        self.image[roi] *= (1.0 - amount * mask[roi])[..., None]

    def noise(self, rng: np.random.Generator, sigma_px: float) -> np.ndarray:
        """Zero-mean, unit-std Gaussian noise smoothed over `sigma_px` frame pixels."""
        field = cv2.GaussianBlur(
            rng.standard_normal((self.size, self.size), dtype=np.float32),
            (0, 0),
            sigma_px * _SUPERSAMPLE,
        )
        return field / max(float(field.std()), 1e-6)

    def downsampled(self) -> np.ndarray:
        frame = self.size // _SUPERSAMPLE
        return cv2.resize(self.image, (frame, frame), interpolation=cv2.INTER_AREA)


def _bgr(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float32)[::-1]


def _render_neutral(landmarks: np.ndarray, rng: np.random.Generator, frame_size: int) -> np.ndarray:
    """Renders the neutral face of a subject whose landmarks are `landmarks` (frame pixels)."""
    e_x, e_y, iod = face_axes(landmarks)
    canvas = _Canvas(frame_size, iod)
    lm = landmarks

    def at(point: np.ndarray, ox: float, oy: float) -> np.ndarray:
        """A point offset from `point` along the face axes, in inter-ocular units."""
        return point + iod * (ox * e_x + oy * e_y)

    roll_deg = float(np.degrees(np.arctan2(e_x[1], e_x[0])))
    eye_mid = eye_centres(lm).mean(0)

    skin_rgb = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * rng.uniform(0.0, 1.0) ** 1.3
    skin_rgb = skin_rgb * [rng.uniform(0.97, 1.04), 1.0, rng.uniform(0.94, 1.03)]
    skin = _bgr(skin_rgb)
    hair = _bgr(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.8, 1.2))
    lips = _bgr(skin_rgb * [0.78, 0.5, 0.52] + [12.0, 0.0, 4.0])

    # Background: a muted wall with a gradient and blotches, so it is not flat either.
    wall = _bgr(rng.uniform(90, 210) * rng.uniform(0.85, 1.0, 3))
    ramp = np.linspace(1.0 + rng.uniform(-0.12, 0.12), 1.0, canvas.size, dtype=np.float32)
    canvas.image[:] = wall * ramp[:, None, None]
    canvas.image *= (1.0 + 0.03 * canvas.noise(rng, 0.4 * iod))[..., None]

    # Head: hair mass behind, neck below, face skin, then the hair fringe over the forehead.
    jaw_width = float(np.hypot(*(lm[16] - lm[0])))
    chin_depth = float((lm[8] - eye_mid) @ e_y) / iod
    head_centre = at(eye_mid, 0.0, 0.35 * chin_depth - 0.45)
    head_axes = (0.56 * jaw_width / iod * rng.uniform(1.08, 1.2), 0.62 * chin_depth + 0.95)
    # Hair falls to about mouth level beside the face.
    hair_mass = canvas.ellipse(head_centre, head_axes, roll_deg, 0.01) * canvas.polygon(
        np.array(
            [at(eye_mid, -3, -3), at(eye_mid, 3, -3), at(eye_mid, 3, 1.0), at(eye_mid, -3, 1.0)]
        ),
        0.1,
    )
    canvas.paint(hair_mass, hair)
    # The neck reaches up under the jaw, so the face's soft edge blends into neck, not wall.
    neck_top = smooth_curve(lm[4:13]) - 0.3 * iod * e_y
    neck = np.concatenate([neck_top, [at(lm[12], 0.0, 2.5), at(lm[4], 0.0, 2.5)]])
    neck_mask = canvas.polygon(neck, 0.01)
    canvas.paint(neck_mask, skin * 0.78)
    top = -rng.uniform(1.05, 1.25)
    arc_t = np.linspace(0.0, np.pi, 15)[1:-1]
    half_width = 0.5 * jaw_width / iod
    forehead = np.array([at(eye_mid, half_width * np.cos(a), top * np.sin(a)) for a in arc_t])
    face_outline = smooth_curve(np.concatenate([lm[JAW], forehead]), closed=True, samples=4)
    face = canvas.polygon(face_outline, 0.01)
    canvas.paint(face, skin)

    # Lighting: a Lambertian ellipsoid under a light from a random direction above the camera.
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, -0.1), 1.0])
    light /= np.linalg.norm(light)
    yy, xx = np.mgrid[0 : canvas.size, 0 : canvas.size].astype(np.float32)
    c_hi = canvas.to_hi(at(eye_mid, 0.0, 0.5 * (chin_depth + top)))
    rel = np.stack([xx - c_hi[0], yy - c_hi[1]], -1)
    nx = rel @ e_x.astype(np.float32) / (half_width * 1.1 * canvas.iod)
    ny = rel @ e_y.astype(np.float32) / (0.5 * (chin_depth - top) * 1.05 * canvas.iod)
    nz = np.sqrt(np.clip(1.0 - nx * nx - ny * ny, 0.0, 1.0))
    lambert = np.clip(light[0] * nx + light[1] * ny + light[2] * nz, 0.0, 1.0)
    skin_area = np.maximum(face, neck_mask)
    ambient = rng.uniform(0.5, 0.65)
    canvas.image *= (1.0 - skin_area * (1.0 - ambient - (1.0 - ambient) * lambert))[..., None]

    # Hair fringe: hair above a hairline that dips at the temples.
    hairline_top = top + rng.uniform(0.15, 0.35)
    fringe_arc = np.array(
        [
            at(eye_mid, 1.15 * half_width * np.cos(a), hairline_top * np.sin(a) ** 0.6 - 0.15)
            for a in np.linspace(0.0, np.pi, 21)
        ]
    )
    fringe_cap = np.array(
        [at(eye_mid, 1.3 * half_width * np.cos(a), (top - 0.4) * np.sin(a)) for a in arc_t[::-1]]
    )
    fringe = canvas.polygon(np.concatenate([fringe_arc, fringe_cap]), 0.015) * face
    canvas.paint(fringe, hair)
    # Hair strands: anisotropic noise along the head's vertical direction.
    hair_area = np.maximum(fringe, hair_mass * (1.0 - skin_area))
    strands = cv2.GaussianBlur(
        rng.standard_normal((canvas.size, canvas.size), dtype=np.float32), (0, 0), 1.0, 6.0
    )
    canvas.image *= (1.0 + 0.2 * hair_area * strands / strands.std())[..., None]

    # Cheek colour and the eye sockets' shadow.
    for side in (-1, 1):
        cheek = at(eye_mid, side * 0.55, 0.55)
        canvas.paint(
            canvas.ellipse(cheek, (0.22, 0.16), roll_deg, 0.08) * rng.uniform(0.05, 0.15),
            _bgr(skin_rgb * [1.0, 0.7, 0.7]),
        )
    for eye, brow in ((RIGHT_EYE, RIGHT_BROW), (LEFT_EYE, LEFT_BROW)):
        centre = lm[eye].mean(0)
        socket = 0.5 * (centre + lm[brow].mean(0))
        canvas.shade(canvas.ellipse(socket, (0.3, 0.2), roll_deg, 0.07), rng.uniform(0.08, 0.16))

    # Nose: shadowed sides of the bridge, highlighted tip, wings and nostrils.
    for side, wing in ((-1, 31), (1, 35)):
        bridge_side = [at(lm[27], side * 0.12, 0.05), at(lm[29], side * 0.14, 0.0), lm[wing]]
        canvas.shade(canvas.polyline(np.array(bridge_side), 0.04, 0.05), 0.12)
        ala_centre = at(lm[wing], -side * 0.02, -0.06)
        ala = canvas.ellipse(ala_centre, (0.07, 0.09), roll_deg, 0.012)
        ala_inner = canvas.ellipse(at(ala_centre, -side * 0.01, 0.0), (0.055, 0.075), roll_deg)
        canvas.shade(np.clip(ala - ala_inner, 0, 1), 0.25)
        nostril = at(0.5 * (lm[wing] + lm[wing - side]), side * 0.005, -0.01)
        canvas.paint(
            canvas.ellipse(nostril, (0.045, 0.022), roll_deg - side * 15, 0.006) * 0.85, skin * 0.3
        )
    canvas.shade(canvas.ellipse(lm[30], (0.06, 0.05), roll_deg, 0.04), -0.08)
    under_nose = np.array([at(lm[31], 0, 0.04), at(lm[33], 0, 0.05), at(lm[35], 0, 0.04)])
    canvas.shade(canvas.polyline(under_nose, 0.03, 0.02), 0.15)

    # Nasolabial folds, deeper in some subjects than others.
    fold_depth = rng.uniform(0.05, 0.2)
    for side, wing, corner in ((-1, 31, 48), (1, 35, 54)):
        fold = smooth_curve(
            np.array(
                [
                    at(lm[wing], side * 0.1, -0.03),
                    at(lm[corner], side * 0.12, -0.12),
                    at(lm[corner], side * 0.1, 0.12),
                ]
            )
        )
        canvas.shade(canvas.polyline(fold, 0.03, 0.03), fold_depth)

    # Mouth: coloured lips, a dark line where they meet, shadows at corners and under the lip.
    upper_lip = np.concatenate([smooth_curve(lm[48:55]), smooth_curve(lm[[64, 63, 62, 61, 60]])])
    lower_lip = np.concatenate(
        [smooth_curve(lm[[54, 55, 56, 57, 58, 59, 48]]), smooth_curve(lm[[60, 67, 66, 65, 64]])]
    )
    lip_alpha = rng.uniform(0.6, 0.9)
    canvas.paint(canvas.polygon(upper_lip, 0.008) * lip_alpha, lips * 0.88)
    canvas.paint(canvas.polygon(lower_lip, 0.008) * lip_alpha, lips)
    canvas.shade(canvas.ellipse(at(lm[57], 0, -0.05), (0.12, 0.03), roll_deg, 0.03), -0.1)
    mouth_line = smooth_curve(lm[[48, 60, 61, 62, 63, 64, 54]])
    canvas.paint(canvas.polyline(mouth_line, 0.025, 0.006) * 0.85, lips * 0.3)
    for corner, side in ((48, -1), (54, 1)):
        canvas.shade(canvas.ellipse(at(lm[corner], side * 0.02, 0), (0.03, 0.02), 0, 0.015), 0.3)
    chin_fold = np.array([at(lm[58], 0, 0.1), at(lm[57], 0, 0.13), at(lm[56], 0, 0.1)])
    canvas.shade(canvas.polyline(chin_fold, 0.05, 0.04), 0.12)

    # Eyes: sclera, iris and pupil inside the lid outline, lashes, lower lid and crease.
    iris_rgb = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.85, 1.15)
    gaze = rng.normal(0.0, 0.015, 2)
    for upper, lower in ((RIGHT_UPPER_LID, RIGHT_LOWER_LID), (LEFT_UPPER_LID, LEFT_LOWER_LID)):
        upper_curve, lower_curve = smooth_curve(lm[upper]), smooth_curve(lm[lower])
        opening = canvas.polygon(np.concatenate([upper_curve, lower_curve[::-1]]))
        centre = 0.5 * (lm[upper[0]] + lm[upper[-1]])
        eye_width = float(np.hypot(*(lm[upper[-1]] - lm[upper[0]]))) / iod
        sclera = canvas.ellipse(centre, (0.5 * eye_width, 0.2 * eye_width), roll_deg, 0.05)
        canvas.paint(opening, _bgr([232, 222, 214]) * (0.7 + 0.25 * sclera[..., None]))
        iris_centre = at(centre, gaze[0], gaze[1] + 0.01)
        iris_r = 0.21 * eye_width
        iris = canvas.ellipse(iris_centre, (iris_r, iris_r), 0, 0.004)
        limbus = iris - canvas.ellipse(iris_centre, (0.8 * iris_r, 0.8 * iris_r), 0, 0.01)
        canvas.paint(iris * opening, _bgr(iris_rgb))
        canvas.shade(np.clip(limbus, 0, 1) * opening, 0.35)
        pupil = canvas.ellipse(iris_centre, (0.4 * iris_r, 0.4 * iris_r), 0, 0.004)
        canvas.paint(pupil * opening, _bgr([14, 12, 12]))
        glint = canvas.ellipse(at(iris_centre, 0.25 * iris_r, -0.3 * iris_r), (0.01, 0.01), 0)
        canvas.paint(glint * opening * 0.8, _bgr([250, 250, 250]))
        # The upper lid casts a shadow on the eyeball.
        canvas.shade(canvas.polyline(upper_curve, 0.06, 0.015) * opening, 0.35)
        lashes = canvas.polyline(upper_curve, 0.045, 0.004)
        canvas.paint(lashes * 0.85, hair * 0.6)
        canvas.paint(canvas.polyline(lower_curve, 0.015, 0.006) * 0.35, lips * 0.6)
        crease = upper_curve + iod * rng.uniform(0.08, 0.12) * -e_y
        canvas.shade(canvas.polyline(crease[2:-2], 0.02, 0.012), rng.uniform(0.15, 0.3))

    # Brows: a band below the landmark (top) contour, thicker at the inner end, with strands.
    brow_thickness = rng.uniform(0.07, 0.11)
    brow_density = rng.uniform(0.55, 0.9)
    brow_strands = cv2.GaussianBlur(
        rng.standard_normal((canvas.size, canvas.size), dtype=np.float32), (0, 0), 3.0, 0.6
    )
    brow_strands = 0.6 + 0.4 * np.clip(brow_strands / brow_strands.std(), -1.0, 1.0)
    for brow, inner_last in ((RIGHT_BROW, True), (LEFT_BROW, False)):
        contour = smooth_curve(lm[brow])
        taper = np.linspace(0.55, 1.0, len(contour))
        taper = taper if inner_last else taper[::-1]
        thickness = iod * brow_thickness * taper[:, None]
        top_edge = contour - 0.15 * thickness * e_y
        bottom_edge = contour + 0.85 * thickness * e_y
        band = canvas.polygon(np.concatenate([top_edge, bottom_edge[::-1]]), 0.01)
        canvas.paint(band * brow_density * brow_strands, hair)

    # Skin texture at three scales (pores, fine mottling, blotches): it is what optical
    # flow latches onto on the cheeks and forehead, where the face has no edges.
    texture = (
        rng.uniform(0.02, 0.05) * canvas.noise(rng, 0.6)
        + rng.uniform(0.02, 0.04) * canvas.noise(rng, 1.5)
        + rng.uniform(0.03, 0.06) * canvas.noise(rng, 0.15 * iod)
    )
    canvas.image *= (1.0 + texture * skin_area)[..., None]
    canvas.image *= rng.uniform(0.9, 1.08)
    return np.clip(canvas.downsampled(), 0.0, 255.0)
