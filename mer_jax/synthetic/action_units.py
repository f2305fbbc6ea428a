"""Action units as smooth, localised displacement fields, and the eyelid motion of a blink.

Each action unit (AU, FACS numbering) is a set of anchors: a point tied to the
landmarks, the direction the skin there moves, a relative weight and a Gaussian
radius. The AU's displacement field is the sum of Gaussian-windowed vectors at
its anchors, so the motion is smooth, local to the AU's region and follows the
subject's own feature layout. Anchors are written for the subject's right side
(image left) and mirrored; a unilateral AU ("R12", "L10") keeps one side of the
face through a soft window across the midline.

Fields are forward displacements in frame pixels: the skin at point p of the
neutral face moves to p + d(p).
"""

import dataclasses
import re
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from mer_jax.landmarks import MIRROR
from mer_jax.synthetic.faces import (
    LEFT_LOWER_LID,
    LEFT_UPPER_LID,
    RIGHT_LOWER_LID,
    RIGHT_UPPER_LID,
    eye_centres,
    face_axes,
    smooth_curve,
)


@dataclasses.dataclass(frozen=True)
class Anchor:
    """One Gaussian-windowed push of an AU.

    Attributes:
        landmarks: landmark indices whose mean is the anchor's base point.
        offset: (along the eye line, downward) shift of the base point, in inter-ocular units.
        direction: (along the eye line towards the image right, downward) direction of motion.
        weight: relative strength within the AU.
        sigma: Gaussian radius in inter-ocular units.
    """

    landmarks: tuple[int, ...]
    direction: tuple[float, float]
    weight: float = 1.0
    sigma: float = 0.15
    offset: tuple[float, float] = (0.0, 0.0)

    def mirrored(self) -> "Anchor":
        return dataclasses.replace(
            self,
            landmarks=tuple(int(MIRROR[i]) for i in self.landmarks),
            direction=(-self.direction[0], self.direction[1]),
            offset=(-self.offset[0], self.offset[1]),
        )


def _bilateral(*anchors: Anchor) -> tuple[Anchor, ...]:
    """The subject's-right anchors plus their left-side mirror images."""
    return anchors + tuple(a.mirrored() for a in anchors)


_UP, _DOWN = (0.0, -1.0), (0.0, 1.0)

# Anchor sets per AU. Directions for the bilateral ones are for the image-left side,
# where "outward" is -x and "towards the midline" is +x.
AU_ANCHORS: dict[int, tuple[Anchor, ...]] = {
    # Inner brow raiser: frontalis pars medialis lifts the inner brow and the forehead above it.
    1: _bilateral(
        Anchor((21,), _UP, 1.0, 0.16),
        Anchor((20,), _UP, 0.6, 0.16),
        Anchor((21,), _UP, 0.5, 0.2, offset=(0.05, -0.25)),
    ),
    # Outer brow raiser.
    2: _bilateral(
        Anchor((18,), _UP, 1.0, 0.16),
        Anchor((17,), _UP, 0.7, 0.14),
        Anchor((19,), _UP, 0.6, 0.16),
        Anchor((18,), _UP, 0.4, 0.2, offset=(0.0, -0.25)),
    ),
    # Brow lowerer: corrugator pulls the inner brows down and together.
    4: _bilateral(
        Anchor((21,), (0.6, 0.8), 1.0, 0.14),
        Anchor((20,), (0.4, 0.9), 0.7, 0.15),
        Anchor((19,), _DOWN, 0.4, 0.15),
        Anchor((21,), (0.9, 0.2), 0.4, 0.08, offset=(0.1, 0.05)),
    ),
    # Upper lid raiser.
    5: _bilateral(Anchor((37,), _UP, 1.0, 0.07), Anchor((38,), _UP, 1.0, 0.07)),
    # Cheek raiser: orbicularis oculi lifts the cheek and pushes the lower lid up.
    6: _bilateral(
        Anchor((40, 41), (-0.25, -1.0), 1.0, 0.22, offset=(0.0, 0.3)),
        Anchor((40, 41), _UP, 0.5, 0.08),
        Anchor((36,), (0.3, -0.5), 0.3, 0.07, offset=(-0.12, 0.0)),
    ),
    # Lid tightener: mostly the lower lid rising, a little of the upper lid coming down.
    7: _bilateral(
        Anchor((41,), _UP, 1.0, 0.07),
        Anchor((40,), _UP, 1.0, 0.07),
        Anchor((37, 38), _DOWN, 0.3, 0.06),
    ),
    # Nose wrinkler: nose wings and bridge skin up, inner brows drawn down.
    9: _bilateral(
        Anchor((31,), (0.1, -1.0), 1.0, 0.12),
        Anchor((21,), _DOWN, 0.4, 0.12),
        Anchor((50,), _UP, 0.4, 0.12),
    )
    + (Anchor((29,), _UP, 0.6, 0.12),),
    # Upper lip raiser.
    10: _bilateral(
        Anchor((50,), _UP, 1.0, 0.13),
        Anchor((49,), _UP, 0.6, 0.12),
        Anchor((31,), _UP, 0.4, 0.13, offset=(-0.08, 0.1)),
    )
    + (Anchor((51,), _UP, 1.0, 0.13),),
    # Lip corner puller: corners out and up, the cheek above them following.
    12: _bilateral(
        Anchor((48,), (-0.75, -0.65), 1.0, 0.16),
        Anchor((48,), (-0.5, -0.9), 0.5, 0.2, offset=(-0.1, -0.35)),
    ),
    # Dimpler: the corner tightens outward while the skin beside it is drawn in, leaving
    # a compressed dimple; tighter and flatter than AU12.
    14: _bilateral(
        Anchor((48,), (-0.95, -0.2), 1.0, 0.08),
        Anchor((48,), (0.9, 0.0), 0.5, 0.07, offset=(-0.15, 0.0)),
    ),
    # Lip corner depressor.
    15: _bilateral(
        Anchor((48,), (-0.2, 1.0), 1.0, 0.14),
        Anchor((59,), _DOWN, 0.5, 0.12),
        Anchor((48,), _DOWN, 0.4, 0.16, offset=(-0.05, 0.25)),
    ),
    # Chin raiser: the chin boss and the lower lip pushed up.
    17: _bilateral(Anchor((7,), _UP, 0.5, 0.2))
    + (Anchor((8,), _UP, 1.0, 0.22, offset=(0.0, -0.15)), Anchor((57,), _UP, 0.7, 0.14)),
    # Lip stretcher.
    20: _bilateral(
        Anchor((48,), (-1.0, 0.15), 1.0, 0.14),
        Anchor((48,), (-1.0, 0.1), 0.5, 0.18, offset=(-0.15, 0.1)),
    ),
    # Lip pressor: the lips squeezed together from above and below.
    24: _bilateral(Anchor((49,), _DOWN, 0.4, 0.09), Anchor((59,), _UP, 0.4, 0.09))
    + (Anchor((51,), _DOWN, 0.6, 0.09), Anchor((57,), _UP, 0.6, 0.09)),
    # Lips part.
    25: _bilateral(Anchor((58,), _DOWN, 0.7, 0.12)) + (Anchor((57,), _DOWN, 1.0, 0.12),),
    # Jaw drop.
    26: _bilateral(Anchor((7,), _DOWN, 0.7, 0.3))
    + (Anchor((8,), _DOWN, 1.0, 0.35), Anchor((57,), _DOWN, 0.8, 0.2)),
}


@dataclasses.dataclass(frozen=True)
class AUActivation:
    """One AU in a clip: which AU, which side of the face ("", "R" or "L") and how strongly."""

    au: int
    side: str = ""
    intensity: float = 1.0

    def code(self) -> str:
        return f"{self.side}{self.au}"


@dataclasses.dataclass(frozen=True)
class AUMorphology:
    """How one subject's AU differs from the template: faces differ in where a muscle
    inserts, how much skin it moves and which way it pulls.

    Attributes:
        shift: (along the eye line, downward) shift of every anchor, in inter-ocular units.
        extent: factor on every anchor's Gaussian radius.
        rotation: turn of every anchor's direction, in radians.
    """

    shift: tuple[float, float] = (0.0, 0.0)
    extent: float = 1.0
    rotation: float = 0.0

    @classmethod
    def draw(cls, rng: np.random.Generator, spread: float) -> "AUMorphology":
        """One subject's morphology: shift N(0, 0.04 iod) per axis, extent log-normal with
        sigma 0.15, rotation N(0, 10 degrees), each times `spread` (0: the template)."""
        shift, log_extent, rotation = rng.normal(0.0, 0.04, 2), rng.normal(0.0, 0.15), rng.normal()
        return cls(
            shift=(float(shift[0] * spread), float(shift[1] * spread)),
            extent=float(np.exp(log_extent * spread)),
            rotation=float(np.deg2rad(10.0) * rotation * spread),
        )


_AU_CODE = re.compile(r"^([RL]?)(\d+)$")


def parse_au_code(code: str) -> list[AUActivation]:
    """Parses a CASME II style AU string ("6+12", "R4+L10") into unit-intensity activations."""
    activations = []
    for part in code.split("+"):
        match = _AU_CODE.match(part.strip())
        if match is None or int(match.group(2)) not in AU_ANCHORS:
            raise ValueError(
                f"Cannot use AU {part!r} of {code!r}: expected an optional R/L prefix and one "
                f"of the modelled AUs {sorted(AU_ANCHORS)}, joined with '+'."
            )
        activations.append(AUActivation(au=int(match.group(2)), side=match.group(1)))
    return activations


def format_au_code(activations: Sequence[AUActivation]) -> str:
    """The CASME II style string of `activations`, AUs in ascending order."""
    return "+".join(a.code() for a in sorted(activations, key=lambda a: a.au))


def displacement_field(
    landmarks: np.ndarray,
    activations: Sequence[AUActivation],
    size: int,
    radius_scale: float = 1.0,
    morphology: Mapping[int, AUMorphology] | None = None,
) -> np.ndarray:
    """Sums the activations' displacement fields on a `size` x `size` grid.

    `radius_scale` widens every anchor's Gaussian: strong (macro) expressions recruit
    more skin around each muscle, and a wider field can move further without folding.
    `morphology` (AU -> `AUMorphology`) is the subject's own variant of each AU; an AU
    not in it keeps the template.

    Returns a (size, size, 2) float32 array of forward displacements (dx, dy) in pixels;
    its scale is set by the intensities and AU weights, not normalised.
    """
    e_x, e_y, iod = face_axes(landmarks)
    axes = np.stack([e_x, e_y])  # rows: face axes in image coordinates
    mid = eye_centres(landmarks).mean(0)
    field = np.zeros((size, size, 2), np.float64)
    for act in activations:
        au_field = np.zeros_like(field)
        own = (morphology or {}).get(act.au, AUMorphology())
        cos, sin = np.cos(own.rotation), np.sin(own.rotation)
        turn = np.array([[cos, -sin], [sin, cos]])
        for anchor in AU_ANCHORS[act.au]:
            centre = landmarks[list(anchor.landmarks)].mean(0) + iod * (
                (np.asarray(anchor.offset) + own.shift) @ axes
            )
            direction = turn @ np.asarray(anchor.direction, np.float64)
            vector = anchor.weight * (direction / np.hypot(*direction)) @ axes
            sigma = anchor.sigma * radius_scale * own.extent * iod
            _add_gaussian(au_field, centre, vector, sigma)
        if act.side:
            au_field *= _side_window(size, mid, e_x, iod, act.side)[..., None]
        field += act.intensity * au_field
    return field.astype(np.float32)


def _add_gaussian(field: np.ndarray, centre: np.ndarray, vector: np.ndarray, sigma: float) -> None:
    """Adds vector * exp(-|p - centre|^2 / 2 sigma^2) to `field`, within 4 sigma of the centre."""
    size = field.shape[0]
    reach = 4.0 * sigma
    x0, x1 = max(0, int(centre[0] - reach)), min(size, int(centre[0] + reach) + 2)
    y0, y1 = max(0, int(centre[1] - reach)), min(size, int(centre[1] + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    gx = np.exp(-0.5 * ((np.arange(x0, x1) - centre[0]) / sigma) ** 2)
    gy = np.exp(-0.5 * ((np.arange(y0, y1) - centre[1]) / sigma) ** 2)
    field[y0:y1, x0:x1] += np.outer(gy, gx)[..., None] * vector


def _side_window(size: int, mid: np.ndarray, e_x: np.ndarray, iod: float, side: str) -> np.ndarray:
    """A soft 0..1 mask of one side of the face ("R": the subject's right, the image left)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    across = (xs - mid[0]) * e_x[0] + (ys - mid[1]) * e_x[1]
    sign = -1.0 if side == "R" else 1.0
    return 1.0 / (1.0 + np.exp(-sign * across / (0.08 * iod)))


def sample_field(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinearly samples a (H, W, 2) field at (n, 2) points; zero outside the grid."""
    pts = np.asarray(points, np.float32)
    return cv2.remap(
        field, pts[:, None, 0], pts[:, None, 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )[:, 0].astype(np.float64)


def displaced_landmarks(landmarks: np.ndarray, field: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Where the landmarks go under `scale` * `field`: solves p = landmark + scale * field(p).

    The images are rendered by backward warping (a frame pixel p shows the neutral face
    at p - field(p)), so this is the landmark position consistent with the pixels.
    """
    moved = landmarks.copy()
    if scale == 0.0:
        return moved
    # The fixed-point iteration contracts by the field's strain (< 1, see `max_strain`).
    for _ in range(100):
        previous, moved = moved, landmarks + scale * sample_field(field, moved)
        if np.abs(moved - previous).max() < 1e-5:
            break
    return moved


def max_strain(field: np.ndarray) -> float:
    """The largest Frobenius norm of the field's Jacobian.

    Below 1 the warp p -> p - field(p) is one-to-one: skin stretches and compresses
    but never folds over itself.
    """
    dx_dy, dx_dx = np.gradient(field[..., 0])
    dy_dy, dy_dx = np.gradient(field[..., 1])
    return float(np.sqrt(dx_dx**2 + dx_dy**2 + dy_dx**2 + dy_dy**2).max())


# --------------------------------------------------------------------------- blinks


@dataclasses.dataclass(frozen=True, eq=False)  # array fields: compare by identity
class Eyelid:
    """One eye's lids in the neutral face, as functions of the position along the eye line.

    Attributes:
        origin: the eye's image-left corner, where the along-eye coordinate is 0.
        e_x, e_y: the face axes.
        xs: sample positions along the eye line (pixels from `origin`).
        upper, lower: lid heights at `xs` (pixels along e_y from `origin`).
        upper_landmarks: indices of the two upper-lid landmarks that a blink moves.
    """

    origin: np.ndarray
    e_x: np.ndarray
    e_y: np.ndarray
    xs: np.ndarray
    upper: np.ndarray
    lower: np.ndarray
    upper_landmarks: tuple[int, int]

    @property
    def skin_reach(self) -> float:
        """How far above the upper lid the skin follows a blink (Gaussian radius, pixels).

        1.3 lid gaps keeps the stretch gradient below 1, so the warp never folds.
        """
        return 1.3 * float((self.lower - self.upper).max())

    def blink_region(self) -> np.ndarray:
        """(4, 2) corners of the neutral-face box a blink moves: the eye and the skin above."""
        top = float(self.upper.min()) - 3.0 * self.skin_reach
        bottom = float(self.lower.max())
        corners = [(x, y) for x in (self.xs[0], self.xs[-1]) for y in (top, bottom)]
        return self.origin + np.array(corners) @ np.stack([self.e_x, self.e_y])

    def opening(self, along: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Upper-lid height and lid gap at positions `along` the eye line (0 outside the eye)."""
        upper = np.interp(along, self.xs, self.upper)
        gap = np.interp(along, self.xs, self.lower - self.upper, left=0.0, right=0.0)
        return upper, gap


def eyelids(landmarks: np.ndarray) -> tuple[Eyelid, Eyelid]:
    """The two eyes' lid curves, drawn through the same smooth curves the renderer uses."""
    e_x, e_y, _ = face_axes(landmarks)
    lids = []
    for upper_idx, lower_idx in (
        (RIGHT_UPPER_LID, RIGHT_LOWER_LID),
        (LEFT_UPPER_LID, LEFT_LOWER_LID),
    ):
        origin = landmarks[upper_idx[0]]
        upper_curve = (smooth_curve(landmarks[upper_idx]) - origin) @ np.stack([e_x, e_y]).T
        lower_curve = (smooth_curve(landmarks[lower_idx]) - origin) @ np.stack([e_x, e_y]).T
        xs = np.linspace(0.0, upper_curve[-1, 0], 48)
        upper = np.interp(xs, upper_curve[:, 0], upper_curve[:, 1])
        lower = np.interp(xs, lower_curve[:, 0], lower_curve[:, 1])
        lids.append(
            Eyelid(
                origin=origin,
                e_x=e_x,
                e_y=e_y,
                xs=xs,
                upper=upper,
                lower=np.maximum(lower, upper),
                upper_landmarks=(int(upper_idx[1]), int(upper_idx[2])),
            )
        )
    return lids[0], lids[1]


def blink_sample_shift(
    lid: Eyelid, points_x: np.ndarray, points_y: np.ndarray, closure: float
) -> np.ndarray:
    """How far above each neutral-face point a blinking frame samples, in pixels along e_y.

    The upper lid slides down over the eye by `closure` (0 open .. 1 shut) of the lid gap:
    between the upper lid and the moving lid edge the frame shows lid skin from above,
    and the skin above the lid stretches with a Gaussian fall-off. Below the lid edge the
    eye is untouched: the edge is an occlusion boundary, softened over a fraction of a pixel.
    """
    rel_x = points_x - lid.origin[0]
    rel_y = points_y - lid.origin[1]
    along = rel_x * lid.e_x[0] + rel_y * lid.e_x[1]
    down = rel_x * lid.e_y[0] + rel_y * lid.e_y[1]
    upper, gap = lid.opening(along)
    travel = closure * gap
    edge = upper + travel
    reach = 1.3 * float((lid.lower - lid.upper).max())
    above = np.exp(-((np.minimum(down - upper, 0.0) / reach) ** 2))
    below_edge = 1.0 / (1.0 + np.exp(np.clip((down - edge) / 0.3, -30.0, 30.0)))
    return travel * above * below_edge


def blinked_landmarks(landmarks: np.ndarray, lids: Sequence[Eyelid], closure: float) -> np.ndarray:
    """The landmarks with each upper lid lowered by `closure` of the lid gap."""
    moved = landmarks.copy()
    for lid in lids:
        for idx in lid.upper_landmarks:
            along = (landmarks[idx] - lid.origin) @ lid.e_x
            _, gap = lid.opening(np.array([along]))
            moved[idx] += closure * gap[0] * lid.e_y
    return moved
