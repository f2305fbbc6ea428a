"""Use a trained LOSO workdir: predict on new clips, and export the portable predictor.

Every LOSO replica (one (fold, seed) run) was trained without one subject, so together
they form an ensemble that has never seen a new person. A new clip's prediction is the
replicas' class probabilities averaged, with their spread (standard deviation over the
replicas) saying how much they agree.

What `launch.py --workdir W --mode predict --input PATH` may name (a frame folder, a
video, a CSV of clips) and how a clip's frames are chosen: `requests`.

Preprocessing is the build's own code and settings: `mer_jax.preprocess.clip_features`
with the options the workdir's dataset.json records (crop and flow sizes, flow methods,
T stored frames): dlib finds the face on the onset frame and one alignment serves the
whole clip. A landmarks sidecar beside the clip, `<folder or video name without
extension>.landmarks.csv` (the sidecar format of `read_landmarks_sidecar`, rows by frame
number), replaces dlib on the frames it covers; a clip where dlib finds no face fails
naming that path. Models trained on a release's official face crops saw those crops
only resized, never aligned by us: they take frame folders of face crops (resized the
same way), and refuse a video.

Outputs: a table printed and written to `predictions_new.csv` in the workdir (or
`--output`): per clip its frames, the predicted class, and per class the mean
probability and its spread.

`export_workdir` (`--mode export`) writes the same ensemble function, serialized, with
its parameters, class names and preprocessing settings: see `mer_jax.export`.

Modules: the trained ensemble is the workdir's (`mer_jax.workdir.Ensemble`: restored
without any training code); `requests` reads what to predict on and preprocesses it;
`output` writes the table and the CSV; `spotting` spots the expressions of one's own video
with a spotting workdir (and recognises them with this module's `predict_clips`).
"""

import pathlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from mer_jax import export
from mer_jax.errors import UserError
from mer_jax.predict.output import Predictions
from mer_jax.predict.requests import ClipRequest, preprocess, preprocessing_settings, read_requests
from mer_jax.workdir import EXPORT_DIR, PREDICTIONS_NEW_CSV, Ensemble, read_config


def predict_clips(ensemble: Ensemble, requests: Sequence[ClipRequest]) -> Predictions:
    """Preprocesses every requested clip as the build did, then predicts them in one batch.

    Raises:
        UserError: a clip that cannot be read or preprocessed (see `preprocess`).
    """
    clips, features, seconds = [], [], []
    for request in requests:
        tic = time.perf_counter()
        clip, clip_arrays = preprocess(request, ensemble.build)
        seconds.append(time.perf_counter() - tic)
        clips.append(clip)
        features.append(clip_arrays)
    absent = sorted(set(ensemble.inputs) - set(features[0]))
    if absent:
        raise UserError(
            f"model {ensemble.model_name!r} of {ensemble.workdir} reads {absent}, which only "
            "a built dataset holds: a new clip's preprocessing does not compute them"
        )
    inputs = {name: np.stack([f[name] for f in features]) for name in ensemble.inputs}
    tic = time.perf_counter()
    outputs = ensemble.predict(inputs)
    inference_s = time.perf_counter() - tic
    return Predictions(
        clips=tuple(clips),
        class_names=ensemble.build.class_names,
        probabilities=outputs["probabilities"],
        spread=outputs["spread"],
        num_replicas=len(ensemble.replicas),
        preprocess_s=tuple(seconds),
        inference_s=inference_s,
    )


def predict_workdir(
    workdir: str | pathlib.Path,
    input_path: str | pathlib.Path,
    *,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
    output: str | pathlib.Path | None = None,
) -> tuple[Predictions, pathlib.Path]:
    """`--mode predict`: the workdir's ensemble on the clips of `input_path`, written to
    `output` (default: the workdir's predictions_new.csv).

    Returns:
        the predictions and the CSV written.

    Raises:
        UserError: see `Ensemble`, `read_requests` and `preprocess`.
    """
    ensemble = Ensemble(workdir)
    predictions = predict_clips(ensemble, read_requests(input_path, onset, offset, apex))
    path = pathlib.Path(output) if output else ensemble.workdir / PREDICTIONS_NEW_CSV
    predictions.write_csv(path)
    return predictions, path


def export_workdir(
    workdir: str | pathlib.Path, output: str | pathlib.Path | None = None
) -> pathlib.Path:
    """`--mode export`: writes the workdir's ensemble as a portable predictor into
    `output` (default: the workdir's export/); see `mer_jax.export`.

    Raises:
        UserError: see `Ensemble`.
    """
    ensemble = Ensemble(workdir)
    leaves, treedef = jax.tree.flatten(ensemble.state)
    paths = [jax.tree_util.keystr(path) for path, _ in jax.tree.leaves_with_path(ensemble.state)]

    def function(parameters: list[jax.Array], inputs: dict[str, jax.Array]) -> dict[str, Any]:
        return ensemble.function(jax.tree.unflatten(treedef, parameters), inputs)

    build = ensemble.build
    info = {
        "class_names": list(build.class_names),
        "preprocessing": preprocessing_settings(build),
        "dataset": {"name": build.name, "release": build.release},
        "model": ensemble.model_name,
        "replicas": [[r.fold, r.seed] for r in ensemble.replicas],
    }
    directory = pathlib.Path(output) if output else ensemble.workdir / EXPORT_DIR
    return export.save(
        directory,
        function,
        [np.asarray(leaf) for leaf in jax.device_get(leaves)],
        paths,
        ensemble.inputs,
        info,
    )


def use_workdir(
    mode: str,
    workdir: str | None,
    *,
    input_path: str | None = None,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
    output: str | None = None,
    fps: float | None = None,
    recognizer: str | None = None,
) -> str:
    """`launch.py --mode predict | export`: runs the mode on a trained workdir and returns
    what to print (the table and the CSV written, the intervals spotted and the folder
    written, or the export folder), with the time. Predict on a spotting workdir spots
    the expressions of a video (`mer_jax.predict.spotting`); on a recognition workdir it
    classifies clips.

    Raises:
        UserError: no --workdir, predict without --input, flags the workdir's task does
            not read, or what `predict_workdir` / `spot_video` / `export_workdir` raise.
    """
    if not workdir:
        raise UserError(f"--mode {mode} needs the --workdir of a finished training run")
    tic = time.perf_counter()
    task = read_config(pathlib.Path(workdir), task=None).get("task", "loso")
    if mode == "export":
        lines = [f"exported the predictor to {export_workdir(workdir, output)}"]
    elif not input_path:
        raise UserError(
            "--mode predict needs --input: a video or frame folder (a spotting workdir), or a "
            "frame folder, a video or a CSV of clips (a recognition workdir)"
        )
    elif task in ("spotting", "spot_baseline"):
        from mer_jax.predict import spotting  # it builds on this module

        given = {"--onset": onset, "--offset": offset, "--apex": apex}
        if any(value is not None for value in given.values()):
            raise UserError(
                f"{workdir} is a spotting workdir: it finds the onset, apex and offset itself; "
                f"leave out {', '.join(k for k, v in given.items() if v is not None)}"
            )
        found, folder = spotting.spot_video(
            workdir, input_path, fps=fps, output=output, recognizer=recognizer
        )
        lines = [found.table(), f"intervals, timeline and notes written to {folder}"]
    else:
        for flag, value, why in (
            ("--fps", fps, "a clip is given in frame numbers, no frame rate is read"),
            ("--recognizer", recognizer, "it classifies clips itself"),
        ):
            if value is not None:
                raise UserError(
                    f"{flag} is for a spotting workdir; {workdir} is a recognition one: {why}"
                )
        predictions, path = predict_workdir(
            workdir, input_path, onset=onset, offset=offset, apex=apex, output=output
        )
        lines = [predictions.table(), f"predictions written to {path}"]
    lines.append(f"{mode} finished in {time.perf_counter() - tic:.0f} s")
    return "\n".join(lines)
