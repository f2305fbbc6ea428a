r"""Optical flow: frame pairs per second and end-point error, OpenCV against TV-L1 in JAX.

  python -m benchmarks.flow                          # 28, 64, 128 and 224 px -> RESULTS.md
  python -m benchmarks.flow --sizes=64 --pairs=8 --no_results    # a quick look

The pairs are the onset and apex frames of synthetic clips (`mer_jax.synthetic`, its
default micro spec without blinks, whose motion is not in the truth) and the astronaut
(`skimage.data`) under a smooth warp of up to 1.5 px; both have a known true flow
(`mer_jax.synthetic.truth`, the warp). Frames and truth are area-resized to each size
(the truth's values scaled with the frame). End-point error (EPE, px of that size) is
averaged over the central 70 % of the frame, where the face is and the border's
unknown motion is not.

Methods: OpenCV's DualTVL1 (default parameters) in one process with one thread and in
one process per core; OpenCV's DIS (medium preset) in one process; TV-L1 in JAX
(`mer_jax.preprocess.flow_jax`, OpenCV's defaults) on the backend JAX finds, all pairs
of a size in one batch, its compile time apart (a build compiles once per crop size).
"|JAX - OpenCV|" is the mean distance of the JAX flow to OpenCV's TV-L1 flow on the face
pairs (the same central region), in px.
"""

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from benchmarks import write_section

SIZES = (28, 64, 128, 224)
# The central share of the frame where EPE is measured (per side: 15 % left out).
CENTRE = 0.7
ASTRONAUT_MAX_PX = 1.5  # peak of the astronaut's warp, in pixels of the 224 px frame


@dataclass(frozen=True, eq=False)  # array fields: compare by identity
class Pairs:
    """Grayscale uint8 (N, S, S) onset and apex frames and their true flows (N, S, S, 2)."""

    onset: np.ndarray
    apex: np.ndarray
    truth: np.ndarray

    def resized(self, size: int) -> "Pairs":
        """The pairs area-resized to `size`, the truth's values scaled with the frame."""
        scale = size / self.onset.shape[1]

        def resize(images: np.ndarray) -> np.ndarray:
            return np.stack(
                [cv2.resize(i, (size, size), interpolation=cv2.INTER_AREA) for i in images]
            )

        return Pairs(resize(self.onset), resize(self.apex), resize(self.truth) * scale)


def face_pairs(count: int) -> Pairs:
    """The onset and apex frames of the first `count` clips of the default synthetic
    micro database without blinks, with their true flows."""
    from mer_jax.synthetic.recordings import SyntheticSpec, plan_database
    from mer_jax.synthetic.truth import onset_apex_truth

    spec = SyntheticSpec(blinks_per_minute=0.0)
    truths = [onset_apex_truth(plan, spec) for plan in plan_database(spec)[:count]]
    gray = [
        np.stack([cv2.cvtColor(getattr(t, frame), cv2.COLOR_RGB2GRAY) for t in truths])
        for frame in ("onset", "apex")
    ]
    return Pairs(*gray, np.stack([t.flow for t in truths]))


def astronaut_pair(size: int = 224) -> Pairs:
    """The astronaut (grayscale, `size` px) and itself under a smooth warp, with the
    true flow: the apex pixel x shows the onset at x - d(x), so the onset pixel p moves
    to x = p + d(x) (solved by fixed-point iteration)."""
    import skimage.data

    onset = cv2.resize(
        cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2GRAY),
        (size, size),
        interpolation=cv2.INTER_AREA,
    )
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    peak = np.float32(ASTRONAUT_MAX_PX * size / 224)

    def motion(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        angle = np.float32(2 * np.pi / size)
        return (
            peak * 0.7 * np.sin(angle * y + 0.3) + peak * 0.3 * np.cos(angle * x),
            peak * 0.6 * np.cos(angle * x + 1.1) - peak * 0.4 * np.sin(angle * y),
        )

    d_x, d_y = motion(xs, ys)
    apex = cv2.remap(onset, xs - d_x, ys - d_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    moved_x, moved_y = xs.copy(), ys.copy()
    for _ in range(50):
        d_x, d_y = motion(moved_x, moved_y)
        moved_x, moved_y = xs + d_x, ys + d_y
    truth = np.stack([moved_x - xs, moved_y - ys], axis=-1)
    return Pairs(onset[None], apex[None], truth[None])


def centre(fields: np.ndarray) -> np.ndarray:
    """The central `CENTRE` share of (N, S, S, ...) fields."""
    size = fields.shape[1]
    cut = round(size * (1 - CENTRE) / 2)
    return fields[:, cut : size - cut, cut : size - cut]


def end_point_error(flows: np.ndarray, truth: np.ndarray) -> float:
    """Mean EPE over the pairs' central regions, in px."""
    return float(np.linalg.norm(centre(flows) - centre(truth), axis=-1).mean())


def _opencv_flow(method: str, onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    from mer_jax.preprocess import compute_flow

    return compute_flow(onset, apex, method)


def _single_thread_worker() -> None:
    cv2.setNumThreads(1)


def opencv_flows(
    method: str, onset: np.ndarray, apex: np.ndarray, processes: int
) -> tuple[np.ndarray, float]:
    """OpenCV flows of every pair and the wall time, in one thread or `processes`
    single-threaded processes."""
    calls = [(method, o, a) for o, a in zip(onset, apex, strict=True)]
    if processes == 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            tic = time.perf_counter()
            flows = [_opencv_flow(*call) for call in calls]
            wall = time.perf_counter() - tic
        finally:
            cv2.setNumThreads(threads)
        return np.stack(flows), wall
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_single_thread_worker) as pool:
        pool.starmap(_opencv_flow, calls[:processes])  # start-up and imports, not timed
        tic = time.perf_counter()
        flows = pool.starmap(_opencv_flow, calls)
        wall = time.perf_counter() - tic
    return np.stack(flows), wall


def jax_flows(onset: np.ndarray, apex: np.ndarray) -> tuple[np.ndarray, float, float]:
    """TV-L1 in JAX of every pair in one batch: the flows, the wall time of a compiled
    run and the time of the first run less that (its compilation)."""
    from mer_jax.preprocess.flow_jax import tvl1_flow_batch

    tic = time.perf_counter()
    tvl1_flow_batch(onset, apex)
    first = time.perf_counter() - tic
    tic = time.perf_counter()
    flows = tvl1_flow_batch(onset, apex)
    wall = time.perf_counter() - tic
    return flows, wall, max(first - wall, 0.0)


def measure_size(size: int, faces: Pairs, astronaut: Pairs, processes: int) -> list[dict]:
    """Every method's rows at one size: pairs/s and EPE on both kinds of pair."""
    faces, astronaut = faces.resized(size), astronaut.resized(size)
    onset = np.concatenate([faces.onset, astronaut.onset])
    apex = np.concatenate([faces.apex, astronaut.apex])
    count = len(faces.onset)
    runs: dict[str, Callable[[], tuple[np.ndarray, float, float | None]]] = {
        "OpenCV TV-L1, 1 process": lambda: (*opencv_flows("tvl1", onset, apex, 1), None),
        f"OpenCV TV-L1, {processes} processes": lambda: (
            *opencv_flows("tvl1", onset, apex, processes),
            None,
        ),
        "OpenCV DIS, 1 process": lambda: (*opencv_flows("dis", onset, apex, 1), None),
        "TV-L1 JAX, one batch": lambda: jax_flows(onset, apex),
    }
    rows, reference = [], None
    for method, run in runs.items():
        print(f"{size} px: {method} ...", flush=True)
        flows, wall, compile_s = run()
        if reference is None:
            reference = flows[:count]
        rows.append(
            {
                "size": size,
                "method": method,
                "pairs_per_s": len(onset) / wall,
                "compile_s": compile_s,
                "epe_faces": end_point_error(flows[:count], faces.truth),
                "epe_astronaut": end_point_error(flows[count:], astronaut.truth),
                "to_opencv": float(
                    np.linalg.norm(centre(flows[:count]) - centre(reference), axis=-1).mean()
                ),
            }
        )
        print(f"  {rows[-1]}", flush=True)
    return rows


def markdown(rows: Sequence[dict], faces: int) -> str:
    """The rows as a table, one block of rows a size."""
    lines = [
        f"{faces} synthetic face pairs and the warped astronaut a size (see the benchmark's "
        "docstring); pairs/s over all of them, EPE and |JAX - OpenCV| in px of that size "
        "over the central 70 % of the frame.",
        "",
        "| size | method | pairs/s | compile s | EPE faces | EPE astronaut | "
        "\\|flow - OpenCV TV-L1\\| faces |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        compile_s = "" if row["compile_s"] is None else f"{row['compile_s']:.1f}"
        lines.append(
            f"| {row['size']} | {row['method']} | {row['pairs_per_s']:.1f} | {compile_s} | "
            f"{row['epe_faces']:.3f} | {row['epe_astronaut']:.3f} | {row['to_opencv']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flow", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="frame sides, px")
    parser.add_argument("--pairs", type=int, default=16, help="synthetic face pairs")
    parser.add_argument(
        "--processes", type=int, default=os.cpu_count(), help="OpenCV's all-cores processes"
    )
    parser.add_argument(
        "--no_results", action="store_true", help="print the table, leave RESULTS.md alone"
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    faces, astronaut = face_pairs(args.pairs), astronaut_pair()
    rows = [row for size in sizes for row in measure_size(size, faces, astronaut, args.processes)]
    table = markdown(rows, args.pairs)
    print(table)
    if not args.no_results:
        command = " ".join(["python -m benchmarks.flow", *argv])
        write_section("flow", "Optical flow: OpenCV and TV-L1 in JAX", table, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
