"""The contract every MER method implements, so one engine trains them all.

The engine keeps a built dataset resident on the device as a dict of arrays
(one leading sample axis). For each step it gathers a batch of those arrays and
hands it to the method, which turns it into network inputs on the device
(`prepare`), runs the network (`__call__`) and scores it (`loss`). The engine
never looks inside a method; a method never sees the fold layout.
"""

import pathlib
from collections.abc import Mapping, Sequence
from typing import ClassVar

import jax
from flax import nnx


class MERModel(nnx.Module):
    """Base class of every method (STSTNet, FR, LTR3O, DeRe-GRL, MIACNet).

    Subclasses set `fields`, the names of the built-dataset features they read
    (e.g. ("flow", "strain")); only those are put on the device.
    """

    fields: ClassVar[tuple[str, ...]] = ()

    def prepare(
        self, batch: dict[str, jax.Array], key: jax.Array, *, train: bool
    ) -> dict[str, jax.Array]:
        """Turns gathered dataset fields into network inputs, on the device.

        Per-sample, label-free steps only (channel selection, per-sample min-max,
        augmentation when `train`): anything fitted to data would leak across folds.
        """
        raise NotImplementedError

    def __call__(
        self, inputs: dict[str, jax.Array], *, train: bool, key: jax.Array | None = None
    ) -> dict[str, jax.Array]:
        """Returns a dict holding at least "logits" (batch, num_classes)."""
        raise NotImplementedError

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Returns the scalar training loss and named scalar terms for the curves."""
        raise NotImplementedError

    @classmethod
    def write_figures(
        cls,
        trained: Sequence["MERModel"],
        data: Mapping[str, jax.Array],
        class_names: Sequence[str],
        workdir: pathlib.Path,
    ) -> list[str]:
        """Draws method-specific pictures of a finished run into `workdir` (default: none).

        The engine calls this once per run, after the reports, in train and eval modes.

        Args:
            trained: one trained model per (fold, seed) replica.
            data: the resident dataset: the `fields` the method reads, plus "label".
            class_names: the expression classes, in label order.
            workdir: the run's output folder.

        Returns:
            The names of the files written.
        """
        del trained, data, class_names, workdir
        return []
