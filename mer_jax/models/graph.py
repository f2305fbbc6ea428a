"""The 68-landmark face graph and per-landmark motion features (DeRe-GRL's input).

Landmarks follow the iBUG / dlib 68-point scheme that every built dataset stores
(`landmarks_onset`, `landmarks_apex`: (68, 2) (x, y) in crop pixels, pixel centres at
integer coordinates). "Right" below is the subject's right, i.e. the image left.

Everything here is per sample and label-free (safe inside `MERModel.prepare`), works
on a leading batch axis and is jit/vmap friendly. The node features are invariant to
a global translation of the face: displacements are taken relative to the clip's
head drift, positions relative to the eye midpoint, and flow is sampled where
the landmarks are (so it moves with them).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mer_jax.landmarks import (
    JAW,
    LEFT_BROW,
    LEFT_EYE,
    MIRROR,
    MOUTH,
    NOSE,
    NUM_LANDMARKS,
    RIGHT_BROW,
    RIGHT_EYE,
)

# The facial components of DeRe-GRL's action decomposition module, in the order the
# paper's description lists them (docs/methods.md: brows, nose, eyes, mouth; jaw optional).
# The paper's "left/right" wording is ambiguous; the names here are the subject's side.
COMPONENTS: dict[str, range] = {
    "right brow": RIGHT_BROW,
    "left brow": LEFT_BROW,
    "nose": NOSE,
    "right eye": RIGHT_EYE,
    "left eye": LEFT_EYE,
    "mouth": MOUTH,
}
JAW_COMPONENT: dict[str, range] = {"jaw": JAW}

# Motion features are in percent of the inter-ocular distance: micro-expression
# displacements are 1-5 % of it, so the features land near unit scale without any
# statistic fitted to data (which would have to stay inside each fold).
MOTION_SCALE = 100.0
# The points whose mean displacement estimates the clip's rigid head drift **[our
# reading]**: the nose bridge and the eye corners, the usual registration points of MER
# pipelines (they move little in any AU); cheaper than a median, which needs a sort.
STABLE_POINTS = (27, 28, 29, 30, 36, 39, 42, 45)
# Side, in flow cells, of the window averaged around each landmark.
FLOW_PATCH = 3
# Guards the inter-ocular division for degenerate landmarks (all points equal).
_IOD_EPS = 1e-3


def components(include_jaw: bool) -> dict[str, range]:
    """The ADM partition: name -> landmark indices; the jaw is the optional seventh."""
    return {**COMPONENTS, **(JAW_COMPONENT if include_jaw else {})}


def _chain(indices: range, closed: bool = False) -> list[tuple[int, int]]:
    points = list(indices)
    edges = list(zip(points[:-1], points[1:], strict=True))
    return edges + ([(points[-1], points[0])] if closed else [])


@functools.cache
def anatomical_edges() -> tuple[tuple[int, int], ...]:
    """Undirected edges of the face graph **[our reading]**.

    The landmark contours (jaw line, brows, nose bridge and nostrils, eye and lip
    outlines) plus links between neighbouring parts, so every component reaches its
    neighbours in one or two hops: brows to each other, the nose bridge and the jaw
    ends; eye corners to the bridge and jaw ends; the nose tip to the upper lip; lip
    corners to the inner lip corners, the nostrils and the jaw; the chin to the lower lip.
    """
    edges = (
        _chain(JAW)
        + _chain(RIGHT_BROW)
        + _chain(LEFT_BROW)
        + _chain(range(27, 31))  # nose bridge
        + _chain(range(31, 36))  # nostrils
        + _chain(RIGHT_EYE, closed=True)
        + _chain(LEFT_EYE, closed=True)
        + _chain(range(48, 60), closed=True)  # outer lips
        + _chain(range(60, 68), closed=True)  # inner lips
        + [
            (30, 33), (21, 22), (21, 27), (22, 27), (0, 17), (16, 26),
            (39, 27), (42, 27), (0, 36), (16, 45), (19, 37), (24, 44),
            (33, 51), (31, 48), (35, 54), (48, 60), (54, 64),
            (4, 48), (12, 54), (8, 57),
        ]
    )  # fmt: skip
    return tuple(edges)


@functools.cache
def anatomical_adjacency() -> np.ndarray:
    """(68, 68) float32 symmetric 0/1 adjacency of `anatomical_edges`, no self-loops."""
    adjacency = np.zeros((NUM_LANDMARKS, NUM_LANDMARKS), np.float32)
    for i, j in anatomical_edges():
        adjacency[i, j] = adjacency[j, i] = 1.0
    return adjacency


@functools.cache
def normalized_adjacency() -> np.ndarray:
    """D^-1/2 (A + I) D^-1/2 of the anatomical graph: the GCN propagation matrix."""
    adjacency = anatomical_adjacency() + np.eye(NUM_LANDMARKS, dtype=np.float32)
    inv_sqrt = 1.0 / np.sqrt(adjacency.sum(axis=1))
    return (adjacency * inv_sqrt[:, None] * inv_sqrt[None, :]).astype(np.float32)


@functools.cache
def neighbour_mean_matrix() -> np.ndarray:
    """Row-normalised anatomical adjacency: x -> the mean of each node's neighbours."""
    adjacency = anatomical_adjacency()
    return (adjacency / adjacency.sum(axis=1, keepdims=True)).astype(np.float32)


def hflip_landmarks(landmarks: jax.Array, crop_size: int, flip: jax.Array) -> jax.Array:
    """Mirrors the chosen samples' (batch, 68, 2) landmarks left-right in a C x C crop.

    x -> C - 1 - x (pixel centres at integers) and the points are renumbered, since
    the subject's right eye becomes the image's other eye. Pairs with
    `layers.hflip_flow` on the flow map: the flow cell j mirrors onto cell S - 1 - j,
    the same place.
    """
    mirrored = landmarks[:, MIRROR] * jnp.asarray([-1.0, 1.0]) + jnp.asarray([crop_size - 1, 0.0])
    return jnp.where(flip[:, None, None], mirrored, landmarks)


def _eye_centres(landmarks: jax.Array) -> tuple[jax.Array, jax.Array]:
    right = landmarks[:, RIGHT_EYE.start : RIGHT_EYE.stop].mean(axis=1)
    left = landmarks[:, LEFT_EYE.start : LEFT_EYE.stop].mean(axis=1)
    return right, left


def _sample_maps(maps: jax.Array, points: jax.Array) -> jax.Array:
    """Bilinear samples of (batch, S, S, K) maps at (batch, N, 2) (x, y) grid coordinates.

    Points outside the grid take the nearest border value (jaw points may lie below
    the crop). One gather of the four neighbours from the flattened maps: several
    times faster on a CPU than `jax.scipy.ndimage.map_coordinates` per channel.
    """
    batch, height, width, channels = maps.shape
    x = jnp.clip(points[..., 0], 0.0, width - 1.0)
    y = jnp.clip(points[..., 1], 0.0, height - 1.0)
    x0 = jnp.clip(jnp.floor(x), 0, width - 2).astype(jnp.int32)
    y0 = jnp.clip(jnp.floor(y), 0, height - 2).astype(jnp.int32)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    flat = maps.reshape(batch, height * width, channels)

    def at(row: jax.Array, col: jax.Array) -> jax.Array:
        return jnp.take_along_axis(flat, (row * width + col)[..., None], axis=1)

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


@functools.cache
def _box_matrix(size: int) -> np.ndarray:
    """(size, size) row-normalised band: x -> the mean of each cell's `FLOW_PATCH` window.

    At the border the window is cut to the cells that exist.
    """
    cells = np.arange(size)
    band = (np.abs(cells[:, None] - cells[None, :]) <= FLOW_PATCH // 2).astype(np.float32)
    return band / band.sum(axis=1, keepdims=True)


def _patch_mean(maps: jax.Array) -> jax.Array:
    """`FLOW_PATCH` x `FLOW_PATCH` moving average of (batch, S, S, K) maps, same size.

    Two small matmuls (rows, then columns): on a CPU about 3x faster than a padded
    shifted-slice sum or `lax.reduce_window`.
    """
    rows = jnp.asarray(_box_matrix(maps.shape[1]))
    cols = jnp.asarray(_box_matrix(maps.shape[2]))
    return jnp.einsum("ij,bjkc,lk->bilc", rows, maps, cols)


def node_features(
    landmarks_onset: jax.Array,
    landmarks_apex: jax.Array,
    flow: jax.Array,
    *,
    crop_size: int,
) -> dict[str, jax.Array]:
    """Per-landmark motion features of a batch of clips **[our reading]**.

    Args:
        landmarks_onset: (batch, 68, 2) onset landmarks, crop pixels.
        landmarks_apex: (batch, 68, 2) apex landmarks, crop pixels.
        flow: (batch, S, S, 2) onset -> apex flow [u, v] in crop pixels, over the C x C crop.
        crop_size: C, the crop side the landmarks and flow values are measured in.

    Returns:
        float32 arrays, motion in percent of the inter-ocular distance (IOD):
        "low": (batch, 68, 7) [displacement (2), patch-mean flow u, v (2), patch-mean
        flow magnitude (1), position (2)]; "high": (batch, 68, 6) [displacement minus
        its anatomical neighbours' mean (2), the same for the flow (2), position (2)].

        Displacement = apex - onset minus the clip's head drift (the mean displacement
        of `STABLE_POINTS`); the flow likewise minus its mean at those points.
        Position = (onset - eye midpoint) / IOD. IOD = distance between the onset eye
        centres.
    """
    onset = landmarks_onset.astype(jnp.float32)
    apex = landmarks_apex.astype(jnp.float32)
    flow = flow.astype(jnp.float32)
    right_eye, left_eye = _eye_centres(onset)
    iod = jnp.maximum(jnp.linalg.norm(left_eye - right_eye, axis=-1), _IOD_EPS)[:, None, None]
    motion_unit = MOTION_SCALE / iod
    position = (onset - (0.5 * (right_eye + left_eye))[:, None]) / iod

    displacement = apex - onset
    stable = jnp.asarray(STABLE_POINTS)
    displacement = displacement - displacement[:, stable].mean(axis=1, keepdims=True)
    displacement = displacement * motion_unit

    # Landmark (x, y) in crop pixels -> flow-grid coordinates: the flow was area-resized
    # from C to S, so cell j's centre is crop coordinate (j + 0.5) C / S - 0.5.
    size = flow.shape[1]
    points = (onset + 0.5) * (size / crop_size) - 0.5
    flow_drift = _sample_maps(flow, points[:, stable]).mean(axis=1)  # (batch, 2)
    local_flow = flow - flow_drift[:, None, None, :]
    magnitude = jnp.linalg.norm(local_flow, axis=-1, keepdims=True)
    patch = _sample_maps(_patch_mean(jnp.concatenate([local_flow, magnitude], -1)), points)
    patch = patch * motion_unit

    neighbour_mean = jnp.asarray(neighbour_mean_matrix())
    flow_uv = patch[..., :2]

    def high_order(x: jax.Array) -> jax.Array:
        return x - jnp.einsum("ij,bjc->bic", neighbour_mean, x)

    low = jnp.concatenate([displacement, patch, position], axis=-1)
    high = jnp.concatenate([high_order(displacement), high_order(flow_uv), position], axis=-1)
    return {"low": low, "high": high}
