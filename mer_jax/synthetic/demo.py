"""A synthetic clip of a person no model has seen, written as a video, to try `--mode predict`.

  python -m mer_jax.synthetic.demo demo/            # demo/synthetic.mp4 + its landmarks sidecar
  python launch.py --workdir runs/ststnet --mode predict --input demo/synthetic.mp4 \
      --onset 0 --apex A --offset O                  # the flags it prints

The person comes from another generator seed than the databases' (seed 0), so no LOSO
replica trained on them. The clip's ground-truth landmarks are written beside the video
as its sidecar (`mer_jax.preprocess.sidecar_path`): dlib need not find the synthetic
face, as it sometimes does not on an aligned crop.
"""

import argparse
import dataclasses
import pathlib
from collections.abc import Sequence

import cv2
import numpy as np

from mer_jax.preprocess.clip import sidecar_path, write_landmarks_csv
from mer_jax.synthetic.recordings import (
    SyntheticSpec,
    all_recordings,
    plan_database,
    subject_identity,
)
from mer_jax.synthetic.render import render_clip, render_frames

DEMO_SEED = 7
FRAMES_PER_SECOND = 30.0


@dataclasses.dataclass(frozen=True)
class DemoClip:
    """The video written, and its annotation (frames numbered from 0, as in the video)."""

    video: pathlib.Path
    onset: int
    apex: int
    offset: int
    emotion: str
    action_units: str

    @property
    def predict_flags(self) -> str:
        frames = f"--onset {self.onset} --apex {self.apex} --offset {self.offset}"
        return f"--input {self.video} {frames}"


def write_video(frames: Sequence[np.ndarray], path: pathlib.Path) -> pathlib.Path:
    """BGR frames as an mp4 (OpenCV's mp4v codec, lossy) at 30 fps."""
    height, width = frames[0].shape[:2]
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = cv2.VideoWriter(str(path), fourcc, FRAMES_PER_SECOND, (width, height))
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def write_demo_clip(out_dir: pathlib.Path, seed: int = DEMO_SEED) -> DemoClip:
    """Renders the first clip of subject 1 of generator seed `seed` into
    `out_dir/synthetic.mp4`, with its landmarks sidecar."""
    spec = SyntheticSpec(num_subjects=1, clips_per_subject=2, seed=seed)
    plan = plan_database(spec)[0]
    clip = render_clip(plan, subject_identity(spec, plan.subject), spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in clip.frames]
    video = write_video(frames, out_dir / "synthetic.mp4")
    write_landmarks_csv(sidecar_path(video), range(plan.num_frames), clip.landmarks)
    return DemoClip(
        video=video,
        onset=0,
        apex=plan.apex - plan.onset,
        offset=plan.offset - plan.onset,
        emotion=plan.emotion,
        action_units=plan.au_code,
    )


def write_recording_video(
    path: pathlib.Path,
    seconds: float,
    *,
    frame_size: int = 112,
    faceless: Sequence[tuple[float, float]] = (),
    seed: int = DEMO_SEED,
    chunk: int = 256,
) -> pathlib.Path:
    """A long video of generator seed `seed`'s recordings, one after the other, at their
    frame rate (200 fps): something to spot on (`--mode predict` on a spotting workdir)
    and to time the long-video extractor on. Rendered and written `chunk` frames at a
    time (bounded memory whatever its length), to a temporary file renamed at the end.

    Args:
        path: the video to write: .avi (MJPEG, every frame a JPEG) or .mp4 (MPEG-4,
            OpenCV's mp4v; far smaller).
        seconds: its length.
        frame_size: side of the square frames.
        faceless: (start, end) seconds where the face is gone (a flat grey frame).
        seed: the generator seed of the people filmed.
    """
    spec = SyntheticSpec(seed=seed, frame_size=frame_size)
    total = round(seconds * spec.fps)
    blank = np.full((frame_size, frame_size, 3), 128, np.uint8)
    partial = path.with_name(f".{path.name}.partial{path.suffix}")
    codec = "mp4v" if path.suffix.lower() == ".mp4" else "MJPG"
    writer = cv2.VideoWriter(
        str(partial), cv2.VideoWriter_fourcc(*codec), spec.fps, (frame_size, frame_size)
    )
    written = 0
    try:
        while written < total:
            for recording in all_recordings(spec):
                identity = subject_identity(spec, recording.subject)
                for start in range(1, recording.num_frames + 1, chunk):
                    count = min(chunk, recording.num_frames + 1 - start, total - written)
                    frames = render_frames(recording, identity, spec, range(start, start + count))
                    for image in frames.images:
                        second = written / spec.fps
                        gone = any(a <= second < b for a, b in faceless)
                        writer.write(blank if gone else cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
                        written += 1
                    if written == total:
                        break
                if written == total:
                    break
        writer.release()
        partial.replace(path)
    finally:
        writer.release()
        partial.unlink(missing_ok=True)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=pathlib.Path, help="folder of the video and its sidecar")
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="generator seed of the person")
    args = parser.parse_args(argv)
    clip = write_demo_clip(args.out_dir, args.seed)
    print(f"{clip.video}: {clip.emotion} (AU {clip.action_units})")
    print(f"predict with: {clip.predict_flags}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
