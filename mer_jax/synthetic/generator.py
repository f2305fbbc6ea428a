"""Writes a synthetic micro-expression database in the CASME II on-disk layout.

Layout (what the CASME II builder reads, plus two sidecars)::

    <out_dir>/CASME2_RAW_selected/sub01/EP03_01f/img46.jpg ... img97.jpg
    <out_dir>/CASME2-coding-synthetic.xlsx
    <out_dir>/landmarks/sub01/EP03_01f.csv     68 landmarks per frame, as a face
                                               pipeline reports them
    <out_dir>/generation.json                  spec, generator version, fps, counts

The landmark sidecars have OpenFace's columns (frame, x_0..x_67, y_0..y_67), one row
per frame file, in frame pixels with pixel centres at integer coordinates (the
OpenCV and dlib convention), iBUG 68-point order; they hold the true landmarks plus
the jitter the project's dlib pipeline measured on a real video
(`SyntheticSpec.alignment_jitter_iod`).

The database is made as the real ones were: each subject is filmed in long recordings
(`plan_recordings`: a neutral face, micro- and macro-expressions with long neutral
stretches between them, head motion with a little out-of-plane rotation, blinks at a
resting rate, illumination drift and flicker), and each clip is a recording's frames
onset..offset of one annotated expression (`render_frames` renders any frames of a
recording; a clip is cut, not rendered apart). An expression is the subject's neutral
face (see `faces`) animated by the AU displacement field of its emotion (see
`action_units`, with the subject's own AU morphology) scaled by its time course.
Frame numbers are the recording's, as in CASME II. Everything is drawn from random
streams keyed by (seed, kind, purpose, subject, recording, item), so the bytes written
depend on the spec only, never on the number of worker processes or the order they
finish in.
"""

import dataclasses
import datetime
import io
import json
import os
import pathlib
import zipfile
from collections.abc import Sequence

import numpy as np
import openpyxl
from openpyxl.writer.excel import ExcelWriter
from tqdm.auto import tqdm

from mer_jax.guards import staged_folder
from mer_jax.preprocess.clip import write_landmarks_csv
from mer_jax.synthetic.faces import Identity
from mer_jax.synthetic.recordings import (
    GENERATOR_VERSION,
    ClipPlan,
    SyntheticSpec,
    database_summary,
    plan_database,
    subject_identity,
)
from mer_jax.synthetic.render import (
    RenderedClip,
    render_clip,
)
from mer_jax.workers import available_cores, worker_pool

# The spec generate_database uses when given none (frozen: one instance serves).
_DEFAULT_SPEC = SyntheticSpec()

FRAMES_DIR = "CASME2_RAW_selected"
CODING_SHEET = "CASME2-coding-synthetic.xlsx"
LANDMARKS_DIR = "landmarks"
MANIFEST = "generation.json"
CODING_COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
)


def _write_clip(root: pathlib.Path, plan: ClipPlan, clip: RenderedClip) -> None:
    frame_dir = root / FRAMES_DIR / plan.subject_dir / plan.filename
    frame_dir.mkdir(parents=True)
    numbers = np.arange(plan.onset, plan.offset + 1)
    for number, data in zip(numbers, clip.frames, strict=True):
        (frame_dir / f"img{number}.jpg").write_bytes(data)
    landmark_dir = root / LANDMARKS_DIR / plan.subject_dir
    landmark_dir.mkdir(parents=True, exist_ok=True)
    write_landmarks_csv(landmark_dir / f"{plan.filename}.csv", numbers, clip.landmarks)


# --------------------------------------------------------------------------- the database


def _clip_task(spec: SyntheticSpec, plan: ClipPlan, identity: Identity, root: str) -> int:
    _write_clip(pathlib.Path(root), plan, render_clip(plan, identity, spec))
    return plan.num_frames


def generate_database(
    out_dir: str | os.PathLike,
    spec: SyntheticSpec = _DEFAULT_SPEC,
    *,
    workers: int | None = None,
    progress: bool = True,
) -> pathlib.Path:
    """Writes the database of `spec` into `out_dir` and returns its path.

    `out_dir` is created; it may exist only as an empty directory. The database is
    written into a temporary sibling directory and renamed into place once complete,
    so an interrupted run never leaves something that looks like a database. With
    more than one worker the clips render in spawned processes, so a script calling
    this needs the usual `if __name__ == "__main__":` guard.

    Args:
        out_dir: where the database goes.
        spec: what to generate; the same spec always gives the same bytes.
        workers: processes rendering clips (None: all cores available to this process).
        progress: show a progress bar.
    """
    out = pathlib.Path(out_dir).absolute()
    _check_target(out)
    if workers is None:
        workers = available_cores()
    if workers < 1:
        raise ValueError(f"workers must be at least 1 (or None for all cores), got {workers}.")
    plans = plan_database(spec)
    # The target may appear while we render: checked again before the rename.
    with staged_folder(out, before_rename=lambda: _check_target(out)) as staging:
        total_frames = _render_database(spec, plans, staging, workers, progress)
        _write_coding_sheet(staging / CODING_SHEET, plans)
        _write_manifest(staging / MANIFEST, spec, plans, total_frames)
    return out


def _check_target(out: pathlib.Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"Cannot write a synthetic database to {out}: it is a file.")
    found = [name for name in (MANIFEST, CODING_SHEET, FRAMES_DIR) if (out / name).exists()]
    if found:
        raise FileExistsError(
            f"{out} already holds a database (found {', '.join(found)}). Generation never "
            "overwrites one: pass a new out_dir, or delete this one to regenerate it."
        )
    if any(out.iterdir()):
        raise FileExistsError(
            f"{out} exists and is not empty. Pass a new or empty out_dir for the synthetic "
            "database."
        )


def _render_database(
    spec: SyntheticSpec,
    plans: Sequence[ClipPlan],
    root: pathlib.Path,
    workers: int,
    progress: bool,
) -> int:
    """Renders every subject's face, then every clip under `root`; returns the frame count."""
    subjects = list(range(1, spec.num_subjects + 1))
    bar = tqdm(
        total=len(subjects) + len(plans),
        desc=f"synthetic {spec.kind} database",
        unit="task",
        disable=not progress,
    )
    with bar, worker_pool(min(workers, len(plans))) as pool:
        identities = []
        for identity in pool.map(subject_identity, [spec] * len(subjects), subjects):
            identities.append(identity)
            bar.update()
        total = 0
        for frames in pool.map(
            _clip_task,
            [spec] * len(plans),
            plans,
            [identities[plan.subject - 1] for plan in plans],
            [str(root)] * len(plans),
        ):
            total += frames
            bar.update()
        return total


# Fixed timestamps for the coding sheet's document properties and zip entries: openpyxl
# stamps both with the current time, which would make every run's bytes differ.
_SHEET_TIME = datetime.datetime(2014, 5, 8)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _write_coding_sheet(path: pathlib.Path, plans: Sequence[ClipPlan]) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(CODING_COLUMNS)
    for p in plans:
        sheet.append([p.subject, p.filename, p.onset, p.apex, p.offset, p.au_code, p.emotion])
    workbook.properties.created = workbook.properties.modified = _SHEET_TIME
    buffer = io.BytesIO()
    ExcelWriter(workbook, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED)).save()
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            dst.writestr(entry, src.read(info), compress_type=zipfile.ZIP_DEFLATED)


def _write_manifest(
    path: pathlib.Path, spec: SyntheticSpec, plans: Sequence[ClipPlan], total_frames: int
) -> None:
    manifest = {
        "generator": "mer_jax.synthetic",
        "generator_version": GENERATOR_VERSION,
        "kind": spec.kind,
        "fps": spec.fps,
        "spec": dataclasses.asdict(spec),
        "counts": database_summary(spec) | {"frames": total_frames},
        "layout": {
            "frames": FRAMES_DIR,
            "coding_sheet": CODING_SHEET,
            "landmarks": LANDMARKS_DIR,
            "landmark_scheme": "iBUG 68 points, frame pixels",
        },
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n")
