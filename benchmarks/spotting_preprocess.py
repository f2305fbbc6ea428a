r"""Long-video preprocessing: source frames per second and peak memory of the motion
extraction every spotting build and prediction runs.

  python -m benchmarks.spotting_preprocess                  # 10 min at 200 fps -> RESULTS.md
  python -m benchmarks.spotting_preprocess --minutes 0.5 --no_results     # a quick look

A synthetic long video (`mer_jax.synthetic.demo.write_recording_video`: the generator's
recordings one after the other, 200 fps, `--frame_size` px square, MPEG-4) is rendered
into a temporary folder, in bounded memory; then a fresh process extracts its motion
exactly as `--mode predict` on a spotting workdir does with synthetic_lv's settings
(`mer_jax.preprocess.long_video`: every frame decoded, one each 80 ms aligned on the face
that dlib finds, checked every second, DIS flow on 64 px crops pooled to 8 x 8). Only the
extraction is timed, after the imports and the landmark model's loading. Frames/s counts
the source frames (every one is decoded); peak memory is the extracting process's
maximum resident set (ru_maxrss), and the same before the extraction (the imports and
the model), so that their difference is what the video itself costs.
"""

import argparse
import concurrent.futures
import multiprocessing
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import write_section

FPS = 200  # the synthetic recordings'


def _extract(video: str) -> dict[str, Any]:
    """In a fresh process: the motion of `video`, timed, with this process's peak RSS."""
    from mer_jax.preprocess.face import shared_landmarker
    from mer_jax.preprocess.long_video import MotionSpec, video_chunks, video_motion

    shared_landmarker()  # the model's loading is not the extraction's
    spec = MotionSpec()
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tic = time.perf_counter()
    found = video_motion(video_chunks(Path(video), spec.step_frames(FPS)), spec)
    seconds = time.perf_counter() - tic
    return {
        "seconds": seconds,
        "rss_before_mb": before_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "sampled": len(found.frame_numbers),
        "positions": len(found.motion),
        "valid": int(found.valid.sum()),
        "motion_mb": found.motion.nbytes / 2**20,
        "notes": found.notes,
    }


def _in_fresh_process(function: Any, *args: Any) -> Any:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def _render(path: str, seconds: float, frame_size: int) -> None:
    from mer_jax.synthetic.demo import write_recording_video

    write_recording_video(Path(path), seconds, frame_size=frame_size)


def measure(minutes: float, frame_size: int, folder: Path) -> dict[str, Any]:
    """Renders the video into `folder`, then extracts its motion in a fresh process."""
    video = folder / "long.mp4"
    tic = time.perf_counter()
    # Rendered in a process of its own too: this one stays small and holds no OpenCV state.
    _in_fresh_process(_render, str(video), minutes * 60.0, frame_size)
    render_s = time.perf_counter() - tic
    row = _in_fresh_process(_extract, str(video))
    frames = round(minutes * 60.0 * FPS)
    return {
        **row,
        "minutes": minutes,
        "frame_size": frame_size,
        "frames": frames,
        "frames_per_s": frames / row["seconds"],
        "video_mb": video.stat().st_size / 2**20,
        "render_s": render_s,
    }


def markdown(row: dict[str, Any]) -> str:
    """The RESULTS.md section's body."""
    return "\n".join([
        "| video | source frames | extraction s | frames/s | peak RSS MB | RSS before MB | "
        "stored motion MB |",
        "|---|---|---|---|---|---|---|",
        f"| {row['minutes']:g} min, {FPS} fps, {row['frame_size']} px, MPEG-4 "
        f"({row['video_mb']:.0f} MB) | {row['frames']} | {row['seconds']:.1f} | "
        f"{row['frames_per_s']:.0f} | {row['peak_rss_mb']:.0f} | {row['rss_before_mb']:.0f} | "
        f"{row['motion_mb']:.2f} |",
        "",
        f"{row['sampled']} frames sampled (one each 80 ms), {row['positions']} positions of "
        f"pooled flow, {row['valid']} of them on the face; notes: "
        f"{'; '.join(row['notes']) or 'none'}. Frames/s: source frames (all decoded) per "
        "second of extraction; peak RSS: the extracting process's maximum resident memory, "
        "RSS before: the same after its imports and the landmark model, before the video.",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.spotting_preprocess", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the video")
    parser.add_argument("--frame_size", type=int, default=112, help="side of its frames, px")
    parser.add_argument(
        "--no_results", action="store_true", help="print the table, leave RESULTS.md alone"
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mer_jax_spotting_bench_") as folder:
        row = measure(args.minutes, args.frame_size, Path(folder))
    table = markdown(row)
    print(table)
    print(f"(rendering the video took {row['render_s']:.0f} s, not counted)")
    if not args.no_results:
        command = " ".join(["python -m benchmarks.spotting_preprocess", *argv])
        write_section(
            "spotting_preprocess", "Long-video preprocessing (spotting)", table, command
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
