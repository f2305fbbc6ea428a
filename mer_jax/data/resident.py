"""A built dataset held in memory, then resident on the device for a whole run.

MER datasets are tiny (hundreds of clips), so the engine puts every field a
method reads on the device once and samples batches there: no host input
pipeline runs inside the training loop.
"""

import dataclasses
import pathlib
from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import data_builders
from mer_jax.data import protocols
from mer_jax.errors import UserError

# Per-sample identity columns kept on the host for reports; never put on the device.
IDENTITY_FIELDS = ("sample_id", "dataset", "subject")


@dataclasses.dataclass(frozen=True)
class MERDataset:
    """All samples of a protocol, sorted by sample_id, as host numpy arrays."""

    name: str
    class_names: tuple[str, ...]
    examples: dict[str, np.ndarray]

    @property
    def num_samples(self) -> int:
        return len(self.examples["sample_id"])

    @property
    def labels(self) -> np.ndarray:
        return self.examples["label"]

    def __getitem__(self, field: str) -> np.ndarray:
        return self.examples[field]


def load(data_config: ml_collections.ConfigDict) -> MERDataset:
    """Builds the configured dataset on first use (cached in data_dir) and reads it.

    Samples the protocol excludes (label -1, e.g. CASME II fear/sadness in the
    5-class protocol) are dropped here. With `data.protocol` set, labels are
    re-derived from the raw emotion strings with that protocol's label map.
    """
    data_dir = pathlib.Path(data_config.data_dir or "")
    if not str(data_config.data_dir or "").strip():
        raise UserError(
            "data.data_dir is empty; give the folder where built datasets are cached, e.g. "
            "--config.data.data_dir=~/.cache/mer_jax/datasets (the default)."
        )
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"data.data_dir {data_dir} is a file, not a folder; give a folder.")
    builder = data_builders.build(
        data_config.name,
        data_dir=data_dir.expanduser(),
        manual_dir=data_config.get("manual_dir"),
        config=data_config.get("builder_config"),
        overrides=dict(data_config.get("overrides") or {}),
    )
    examples = data_builders.load_examples(builder)
    class_names = tuple(builder.info.metadata["class_names"])
    if data_config.get("protocol"):
        protocol = protocols.get_protocol(data_config.protocol)
        labels = [
            protocol.label_of(d, e)
            for d, e in zip(examples["dataset"], examples["emotion"], strict=True)
        ]
        examples["label"] = np.array([-1 if lab is None else lab for lab in labels], np.int64)
        class_names = tuple(protocol.class_names)
    keep = examples["label"] >= 0
    examples = {k: v[keep] for k, v in examples.items()}
    if not keep.any():
        raise UserError(
            f"Dataset {data_config.name!r} has no sample with a label under its protocol; "
            "check data.protocol and the annotation's emotion column."
        )
    return MERDataset(data_config.name, class_names, examples)


def put_on_device(dataset: MERDataset, fields: Sequence[str], mesh: Mesh) -> dict[str, jax.Array]:
    """Copies the fields a method reads, plus the labels, to every device of the mesh.

    Replicated, because each device trains different folds on the same samples.
    """
    missing = [f for f in fields if f not in dataset.examples]
    if missing:
        raise UserError(
            f"The model reads fields {missing} that dataset {dataset.name!r} does not hold "
            f"(it has {sorted(dataset.examples)}); rebuild the dataset with a builder that "
            "stores them."
        )
    replicated = NamedSharding(mesh, PartitionSpec())
    arrays = {f: dataset.examples[f] for f in (*fields, "label")}
    arrays["label"] = arrays["label"].astype(np.int32)
    return jax.device_put(arrays, replicated)
