"""Dense optical flow and optical strain between two aligned face crops.

Conventions used throughout mer-jax:

* Inputs are grayscale uint8 crops of the same size (the aligned onset and apex).
* A flow field is float32 (H, W, 2) holding [u, v]: the horizontal and vertical
  displacement, in pixels of the crop it was computed on, that carries a pixel
  of `prev` to its place in `nxt`.
* Flow is always computed at crop resolution and resized afterwards: micro-
  expression motion is often below one pixel, and downsizing the frames first
  would wipe it out before the flow solver ever sees it.
"""

from collections.abc import Callable

import cv2
import numpy as np

FLOW_METHODS = ("tvl1", "dis", "farneback", "tvl1_jax")


def _check_pair(prev: np.ndarray, nxt: np.ndarray) -> None:
    if prev.ndim != 2 or nxt.ndim != 2 or prev.dtype != np.uint8 or nxt.dtype != np.uint8:
        raise ValueError(
            "optical flow needs two grayscale uint8 images (H, W); got "
            f"{prev.dtype}{prev.shape} and {nxt.dtype}{nxt.shape}. Convert colour crops "
            "with cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) first."
        )
    if prev.shape != nxt.shape:
        raise ValueError(
            f"optical flow needs two images of the same size; got {prev.shape} and {nxt.shape}"
        )


def tvl1_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """TV-L1 flow (OpenCV DualTVL1, default parameters), the MER standard since STSTNet.

    Args:
        prev: grayscale uint8 (H, W), e.g. the aligned onset crop.
        nxt: grayscale uint8 (H, W), e.g. the aligned apex crop.

    Returns:
        float32 (H, W, 2) [u, v] in pixels of the input images.
    """
    _check_pair(prev, nxt)
    solver = cv2.optflow.DualTVL1OpticalFlow_create()
    return solver.calc(prev, nxt, None).astype(np.float32, copy=False)


def dis_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """DIS flow (OpenCV, MEDIUM preset): much faster than TV-L1, slightly less accurate.

    Same arguments and return value as `tvl1_flow`.
    """
    _check_pair(prev, nxt)
    solver = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return solver.calc(prev, nxt, None).astype(np.float32, copy=False)


def farneback_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Farneback polynomial-expansion flow (OpenCV, the parameters of its documentation).

    Same arguments and return value as `tvl1_flow`.
    """
    _check_pair(prev, nxt)
    flow = cv2.calcOpticalFlowFarneback(
        prev,
        nxt,
        None,
        pyr_scale=0.5,
        levels=3,
        winsize=15,
        iterations=3,
        poly_n=5,
        poly_sigma=1.2,
        flags=0,
    )
    return flow.astype(np.float32, copy=False)


def tvl1_jax_flows(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """TV-L1 flows of a batch solved by JAX (`mer_jax.preprocess.flow_jax`, OpenCV's
    defaults) in one program split over the local devices.

    Args:
        prev, nxt: uint8 (B, H, W) grayscale images.

    Returns:
        float32 (B, H, W, 2) [u, v] in pixels of the input images.
    """
    for onset, apex in zip(prev, nxt, strict=True):
        _check_pair(onset, apex)
    # Imported here: clip workers that never solve with JAX should not start it.
    from mer_jax.preprocess.flow_jax import tvl1_flow_batch

    return tvl1_flow_batch(prev, nxt)


def tvl1_jax_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """TV-L1 flow of one pair solved by JAX (see `tvl1_jax_flows`).

    Same arguments and return value as `tvl1_flow`.
    """
    return tvl1_jax_flows(prev[None], nxt[None])[0]


_FLOW_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "tvl1": tvl1_flow,
    "dis": dis_flow,
    "farneback": farneback_flow,
    "tvl1_jax": tvl1_jax_flow,
}
# Methods that solve many pairs at once on the accelerator: a build computes them in
# batches in its own process (`compute_flows`) instead of one pair in each worker.
_BATCH_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "tvl1_jax": tvl1_jax_flows,
}
BATCHED_FLOW_METHODS = tuple(_BATCH_FUNCTIONS)


def _flow_function(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    try:
        return _FLOW_FUNCTIONS[method]
    except KeyError:
        raise ValueError(
            f"unknown optical flow method {method!r}; choose one of {', '.join(FLOW_METHODS)}"
        ) from None


def compute_flow(prev: np.ndarray, nxt: np.ndarray, method: str) -> np.ndarray:
    """Flow from `prev` to `nxt` with the named method (one of `FLOW_METHODS`)."""
    return _flow_function(method)(prev, nxt)


def compute_flows(prev: np.ndarray, nxt: np.ndarray, method: str) -> np.ndarray:
    """Flows of a batch of pairs: uint8 (B, H, W) each, float32 (B, H, W, 2) returned.

    A method of `BATCHED_FLOW_METHODS` solves the whole batch in one program; the others
    solve one pair after another.
    """
    flow_function = _flow_function(method)
    if method in _BATCH_FUNCTIONS:
        return _BATCH_FUNCTIONS[method](prev, nxt)
    return np.stack([flow_function(onset, apex) for onset, apex in zip(prev, nxt, strict=True)])


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Magnitude of the optical strain tensor of a flow field.

    With central differences of the flow [u, v]:
    exx = du/dx, eyy = dv/dy, exy = 0.5 * (du/dy + dv/dx), and the magnitude is
    sqrt(exx^2 + eyy^2 + 2 * exy^2) (the Frobenius norm of the symmetric tensor).
    A rigid translation has zero strain; the skin deformation of an expression does not,
    which is why strain complements flow as an input.

    Args:
        flow: float (H, W, 2) [u, v], in pixels; compute it at crop resolution.

    Returns:
        float32 (H, W), per pixel of the crop.
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"optical_strain needs a (H, W, 2) flow field; got shape {flow.shape}")
    u = flow[..., 0].astype(np.float64)
    v = flow[..., 1].astype(np.float64)
    # np.gradient: central differences inside, one-sided on the border rows/columns.
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    exy = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * exy**2).astype(np.float32)


def resize_flow(flow: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resizes a flow field (or a strain map) with area interpolation.

    The VALUES are not rescaled: a resized field still holds displacements in pixels
    of the crop the flow was computed on (crop-pixel units), so fields built with the
    same crop size are comparable whatever their stored size. Area interpolation
    averages the motion of every source pixel that a target pixel covers, instead of
    sampling a few of them.

    Args:
        flow: (H, W, C) or (H, W) float array.
        size: target side (square) or (height, width).

    Returns:
        float32 array of shape (height, width) + flow.shape[2:].
    """
    height, width = (size, size) if isinstance(size, int) else size
    resized = cv2.resize(
        flow.astype(np.float32, copy=False), (width, height), interpolation=cv2.INTER_AREA
    )
    # cv2 drops a trailing channel axis of size 1; put it back so shapes are predictable.
    return resized.reshape((height, width) + flow.shape[2:])
