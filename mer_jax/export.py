"""A portable predictor: a trained LOSO ensemble as files that run without this project's
training code.

`launch.py --workdir W --mode export` (`mer_jax.predict.export_workdir`) writes W/export/:

- `ensemble.jaxexport`: the ensemble's predict function serialized by `jax.export`,
  lowered for cpu, cuda and tpu, with a symbolic batch size. It maps (parameters,
  preprocessed inputs) to the class probabilities averaged over the (fold, seed)
  replicas, their spread (standard deviation over replicas) and every replica's own.
- `parameters.npz`: the stacked parameters of every replica, plain arrays (no pickle),
  in the function's argument order; their names are in predictor.json.
- `predictor.json`: the class names, the preprocessing settings of the build the models
  were trained on (crop and flow sizes, flow methods, T stored frames, face-cropped or
  not), the inputs' names, per-sample shapes and dtypes, the replicas and the model.

`load(path)` reads them back with numpy and jax alone (it imports neither
`mer_jax.train` nor `mer_jax.models`) and predicts from preprocessed arrays, the
dictionary `mer_jax.preprocess.clip_features` returns for a clip made with the recorded
settings (`ClipOptions(**{k: predictor.preprocessing[k] for k in ...})`).
"""

import dataclasses
import json
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from mer_jax.errors import UserError

FUNCTION_FILE = "ensemble.jaxexport"
PARAMETERS_FILE = "parameters.npz"
PREDICTOR_JSON = "predictor.json"
PLATFORMS = ("cpu", "cuda", "tpu")
FORMAT_VERSION = 1

# Input name -> (per-sample shape, dtype name).
InputSpecs = Mapping[str, tuple[Sequence[int], str]]


def check_inputs(inputs: Mapping[str, Any], specs: InputSpecs, where: str) -> dict[str, np.ndarray]:
    """The inputs as arrays of the trained dtypes, each a batch of samples of the trained
    per-sample shape.

    Values are cast to the dtype the models were trained on (e.g. flow to float16, as
    the build stores it), so a caller's float32 flow is rounded as the build's was.

    Raises:
        UserError: an input missing or unknown, a shape that is not (batch,) + the
            trained one, or batch sizes that differ; the message names the input and the
            preprocessing setting that fixes its shape.
    """
    missing = sorted(set(specs) - set(inputs))
    unknown = sorted(set(inputs) - set(specs))
    if missing or unknown:
        raise UserError(
            f"{where} takes inputs {sorted(specs)}; missing {missing}, unknown {unknown}. "
            "Give the arrays mer_jax.preprocess.clip_features returns (with a leading "
            "batch axis)."
        )
    arrays, batch_sizes = {}, set()
    for name, (shape, dtype) in specs.items():
        value = np.asarray(inputs[name])
        if value.shape[1:] != tuple(shape):
            raise UserError(
                f"{where}: input {name} has per-sample shape {value.shape[1:]}, but the models "
                f"were trained on {tuple(shape)} (a batch axis first); preprocess the clip with "
                "the build's settings (crop_size, flow_size, num_frames of its preprocessing)."
            )
        batch_sizes.add(value.shape[0])
        arrays[name] = value.astype(dtype, copy=False)
    if len(batch_sizes) != 1:
        raise UserError(f"{where}: the inputs hold different numbers of samples {batch_sizes}")
    return arrays


def save(
    directory: str | pathlib.Path,
    function: Callable[[list[jax.Array], dict[str, jax.Array]], dict[str, jax.Array]],
    parameters: Sequence[np.ndarray],
    parameter_names: Sequence[str],
    inputs: InputSpecs,
    info: Mapping[str, Any],
) -> pathlib.Path:
    """Serializes `function(parameters, inputs)` with `jax.export` for every platform of
    PLATFORMS, with a symbolic batch size, and writes the artifact into `directory`.

    Args:
        directory: the folder to write (created; files of an earlier export replaced).
        function: a jax-traceable function of (the parameter list, the input dict).
        parameters: its parameter arrays, in argument order.
        parameter_names: a readable path of each (kept in predictor.json).
        inputs: name -> (per-sample shape, dtype) of the inputs.
        info: what predictor.json says besides the inputs and parameters: class_names,
            preprocessing, replicas, model, ...

    Returns:
        the folder written.
    """
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (batch,) = jax.export.symbolic_shape("batch")
    input_specs = {
        name: jax.ShapeDtypeStruct((batch, *shape), np.dtype(dtype))
        for name, (shape, dtype) in inputs.items()
    }
    parameter_specs = [jax.ShapeDtypeStruct(p.shape, p.dtype) for p in parameters]
    exported = jax.export.export(jax.jit(function), platforms=PLATFORMS)(
        parameter_specs, input_specs
    )
    (directory / FUNCTION_FILE).write_bytes(exported.serialize())
    # Index-numbered entries: parameter paths may hold characters a zip entry name should not.
    np.savez(
        directory / PARAMETERS_FILE,
        **{f"p{index:05d}": np.asarray(value) for index, value in enumerate(parameters)},
    )
    predictor = {
        **info,
        "format_version": FORMAT_VERSION,
        "platforms": list(PLATFORMS),
        "jax_version": jax.__version__,
        "inputs": {name: {"shape": list(s), "dtype": d} for name, (s, d) in inputs.items()},
        "parameters": list(parameter_names),
    }
    (directory / PREDICTOR_JSON).write_text(json.dumps(predictor, indent=2))
    return directory


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A loaded ensemble predictor (see the module docstring).

    Attributes:
        class_names: the classes, in the order of the probabilities.
        preprocessing: the build's preprocessing settings (crop_size, flow_size,
            flow_method, num_frames, frames_flow_method, face_cropped).
        inputs: name -> (per-sample shape, dtype) of the arrays `predict` takes.
        info: all of predictor.json.
    """

    class_names: tuple[str, ...]
    preprocessing: dict[str, Any]
    inputs: dict[str, tuple[tuple[int, ...], str]]
    info: dict[str, Any]
    _exported: jax.export.Exported
    _parameters: list[np.ndarray]

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The ensemble's prediction for a batch of preprocessed clips.

        Args:
            inputs: name -> array (batch, *per-sample shape) for every name of `inputs`.

        Returns:
            "probabilities" (batch, classes): averaged over the replicas; "spread"
            (batch, classes): their standard deviation over the replicas;
            "replica_probabilities" (replicas, batch, classes).

        Raises:
            UserError: inputs that do not match the trained ones (see `check_inputs`).
        """
        arrays = check_inputs(inputs, self.inputs, "this predictor")
        outputs = self._exported.call(self._parameters, arrays)
        return {name: np.asarray(value) for name, value in outputs.items()}


def load(path: str | pathlib.Path) -> Predictor:
    """Reads an exported predictor folder (written by `launch.py --mode export`).

    Raises:
        UserError: the folder lacks a file of the artifact, or was written in another
            format version.
    """
    directory = pathlib.Path(path)
    files = [directory / name for name in (FUNCTION_FILE, PARAMETERS_FILE, PREDICTOR_JSON)]
    absent = [file.name for file in files if not file.is_file()]
    if absent:
        raise UserError(
            f"{directory} is not an exported predictor (missing {', '.join(absent)}); write "
            "one with `python launch.py --workdir W --mode export`."
        )
    info = json.loads((directory / PREDICTOR_JSON).read_text())
    if info.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{directory} holds predictor format {info.get('format_version')}, this code reads "
            f"{FORMAT_VERSION}; export the workdir again with this version."
        )
    exported = jax.export.deserialize(bytearray((directory / FUNCTION_FILE).read_bytes()))
    with np.load(directory / PARAMETERS_FILE, allow_pickle=False) as stored:
        parameters = [stored[f"p{index:05d}"] for index in range(len(info["parameters"]))]
    return Predictor(
        class_names=tuple(info["class_names"]),
        preprocessing=dict(info["preprocessing"]),
        inputs={name: (tuple(s["shape"]), s["dtype"]) for name, s in info["inputs"].items()},
        info=info,
        _exported=exported,
        _parameters=parameters,
    )
