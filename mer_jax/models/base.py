"""The contract every MER method implements, so one engine trains them all.

The engine keeps a built dataset resident on the device as a dict of arrays
(one leading sample axis). For each step it gathers a batch of those arrays and
hands it to the method, which turns it into network inputs on the device
(`prepare`), runs the network (`__call__`) and scores it (`loss`). The engine
never looks inside a method; a method never sees the fold layout.
"""

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
