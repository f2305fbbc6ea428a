r"""The STSTNet authors' 68 LOSO models on our preprocessing of the MEGC 2019 composite.

  python -m benchmarks.official_ststnet --weights ~/STSTNet/STSTNet_Weights \
      --config configs/protocols/megc2019_composite.py:ststnet \
      --config.data.manual_dir=/data/MEGC2019

The authors publish one PyTorch model per left-out subject (christy1206/STSTNet,
`STSTNet_Weights/<subject>.pth`: 006..037 of SAMM, s01..s20 of SMIC, sub01..sub26 of
CASME II; 68 files). Their code predicts each subject's clips with that subject's model
(main.py: the subject's whole `u_test` folder as one batch, eval mode, images as
`cv2.imread` returns them); the predictions of all 68 are pooled for UF1 and UAR. This
does the same on the composite as our builders preprocess it: the files are read without
torch (`mer_jax.models.torch_weights`, which refuses anything but tensors), loaded into
our `variant="released"` STSTNet (`ststnet.load_official_weights`), and fed each clip's
image exactly as `python -m data_builders.export megc2019 --format ststnet` writes it
(`data_builders.export.ststnet_images`). No training: how close the figures come to the
authors' own says how close our face crop, flow, strain and normalisation are to the
inputs they trained on.

A subject of the build without a weight file is an error naming every such subject;
weight files that match no subject are listed. `--composite_stand_in` runs a build that
stands in for the composite (the `megc2019_shaped` synthetic config, 68 subjects): its
subjects, in sorted order, take the composite's 68 subject names in the official list's
order (and their databases, for the per-database rows), so the whole path runs without
licensed data; its figures mean nothing. `--record` writes the table into RESULTS.md.
"""

import functools
import sys
from pathlib import Path

import ml_collections
import numpy as np
from absl import flags
from flax import nnx
from ml_collections import config_flags

import data_builders
from benchmarks import command_line, run_app, write_section
from data_builders.export import ststnet_images
from data_builders.megc2019 import composite_entries
from mer_jax.data.dataset import MERDataset
from mer_jax.errors import UserError
from mer_jax.evaluate.metrics import classification_metrics
from mer_jax.models.ststnet import STSTNet, load_official_weights
from mer_jax.models.torch_weights import read_state_dict

# The authors' labels (main.py, recognition_evaluation): negative 0, positive 1, surprise 2.
CLASS_NAMES = ("negative", "positive", "surprise")
# Their weights on their inputs: UF1 and UAR of the predictions their
# STSTNet_python_logfile.txt prints for each subject, pooled per database and over all
# 442 clips (the last is the log's own final line, .7209 / .725).
PUBLISHED = {
    "casme2": (0.8304, 0.8304),
    "samm": (0.5993, 0.6145),
    "smic": (0.6871, 0.6876),
    "all": (0.7209, 0.7250),
}


def weight_names(dataset: MERDataset, stand_in: bool) -> dict[str, tuple[str, str]]:
    """Subject of the build -> (its weight file's name, its database).

    The composite's subjects are named by their release folders ("sub01", "006", "s01"),
    the names of the authors' files; a stand-in's take the official list's names in
    order.

    Raises:
        UserError: a stand-in without exactly the composite's number of subjects.
    """
    subjects = sorted(set(str(subject) for subject in dataset["subject"]))
    if not stand_in:
        part_of = dict(zip(dataset["subject"], dataset["dataset"], strict=True))
        return {s: (s.rsplit("/", 1)[-1], str(part_of[s])) for s in subjects}
    official = list(dict.fromkeys((e.subject, e.dataset) for e in composite_entries()))
    if len(subjects) != len(official):
        raise UserError(
            f"--composite_stand_in needs a build of {len(official)} subjects, like the "
            f"composite; {dataset.name} has {len(subjects)}"
        )
    return dict(zip(subjects, official, strict=True))


def predict_with_official_weights(
    dataset: MERDataset, weights_dir: Path, names: dict[str, tuple[str, str]]
) -> np.ndarray:
    """Each clip's class, predicted by the model of its subject's weight file.

    Raises:
        UserError: subjects without a weight file (all named), or a file that is not the
            authors' STSTNet state dict.
    """
    missing = sorted(
        f"{subject} ({name}.pth)"
        for subject, (name, _) in names.items()
        if not (weights_dir / f"{name}.pth").is_file()
    )
    if missing:
        raise UserError(
            f"{len(missing)} subject(s) have no weight file in {weights_dir}: {', '.join(missing)}"
        )
    wanted = {f"{name}.pth" for name, _ in names.values()}
    unused = sorted(path.name for path in weights_dir.glob("*.pth") if path.name not in wanted)
    if unused:
        print(f"weight files matching no subject of the build ({len(unused)}): {', '.join(unused)}")
    images = ststnet_images(dataset["flow"], dataset["strain"]).astype(np.float32)
    subjects = np.asarray([str(subject) for subject in dataset["subject"]])
    model = STSTNet(len(CLASS_NAMES), variant="released", rngs=nnx.Rngs(0))
    predictions = np.full(dataset.num_samples, -1, np.int64)
    for subject, (name, _) in sorted(names.items()):
        path = weights_dir / f"{name}.pth"
        try:
            load_official_weights(model, read_state_dict(path))
        except UserError as error:
            raise UserError(f"{path}: {error}") from None
        clips = np.flatnonzero(subjects == subject)
        # The subject's clips as one batch, as main.py's test loader (batch 256) gives them.
        logits = model({"motion": images[clips]}, train=False)["logits"]
        predictions[clips] = np.asarray(logits).argmax(axis=1)
    return predictions


def results_table(
    dataset: MERDataset, predictions: np.ndarray, names: dict[str, tuple[str, str]]
) -> tuple[str, dict[str, dict]]:
    """(a markdown table of UF1/UAR per database and pooled beside the published
    figures, the metrics by row)."""
    parts = np.asarray([names[str(subject)][1] for subject in dataset["subject"]])
    rows = {part: parts == part for part in sorted(set(parts))}
    rows["all"] = np.ones(dataset.num_samples, bool)
    lines = [
        "| clips of | subjects | clips | UF1 | UAR | published UF1 | published UAR |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    metrics = {}
    for row, keep in rows.items():
        metrics[row] = classification_metrics(
            dataset.labels[keep], predictions[keep], len(CLASS_NAMES)
        )
        subjects = len(set(dataset["subject"][keep]))
        uf1, uar = PUBLISHED.get(row, (None, None))
        published = f"{uf1:.4f} | {uar:.4f}" if uf1 is not None else "- | -"
        lines.append(
            f"| {row} | {subjects} | {int(keep.sum())} | {metrics[row]['uf1']:.4f} | "
            f"{metrics[row]['uar']:.4f} | {published} |"
        )
    return "\n".join(lines), metrics


def run(config: ml_collections.ConfigDict, weights: str | None, stand_in: bool) -> str:
    """Loads the data, predicts with the authors' weights; returns the table.

    Raises:
        UserError: no --weights folder, a config that is not the released STSTNet, data
            whose classes are not the authors' three, or what loading and predicting raise.
    """
    if not weights or not Path(weights).expanduser().is_dir():
        raise UserError(
            f"--weights {weights!r} is not a folder; give the authors' STSTNet_Weights folder"
        )
    if config.model.name != "ststnet" or config.model.get("variant") != "released":
        raise UserError(
            "the authors' weights run in STSTNet's released variant: use "
            "--config configs/protocols/megc2019_composite.py:ststnet"
        )
    dataset = data_builders.load(config.data)
    if not isinstance(dataset, MERDataset) or tuple(dataset.class_names) != CLASS_NAMES:
        raise UserError(
            f"the authors' models predict {CLASS_NAMES}; the data's classes are "
            f"{getattr(dataset, 'class_names', None)} (use the megc2019_3class protocol)"
        )
    names = weight_names(dataset, stand_in)
    predictions = predict_with_official_weights(dataset, Path(weights).expanduser(), names)
    table, _ = results_table(dataset, predictions, names)
    print(
        f"{len(names)} subjects, each predicted by its own model ({weights}/<subject>.pth); "
        f"{dataset.num_samples} clips of {dataset.name}"
    )
    print(table)
    return table


def _define_flags() -> dict[str, flags.FlagHolder]:
    """The command's flags, defined when it runs, not on import: `--config` is also the
    flag of other benchmarks that a test process may import beside this module."""
    return {
        "config": config_flags.DEFINE_config_file(
            "config",
            "configs/protocols/megc2019_composite.py:ststnet",
            "The composite's STSTNet config.",
        ),
        "weights": flags.DEFINE_string(
            "weights", None, "Folder of the authors' <subject>.pth files."
        ),
        "stand_in": flags.DEFINE_bool(
            "composite_stand_in",
            False,
            "The data stands in for the composite (synthetic, 68 subjects).",
        ),
        "record": flags.DEFINE_bool("record", False, "Also write the table into RESULTS.md."),
    }


def main(argv: list[str], defined: dict[str, flags.FlagHolder]) -> None:
    del argv
    try:
        table = run(defined["config"].value, defined["weights"].value, defined["stand_in"].value)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if defined["record"].value:
        write_section(
            "official_ststnet",
            "The STSTNet authors' weights on our preprocessing of the MEGC 2019 composite",
            table,
            command_line("benchmarks.official_ststnet"),
        )


if __name__ == "__main__":
    run_app(functools.partial(main, defined=_define_flags()))
