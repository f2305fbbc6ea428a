"""The contract every model implements, so one training step serves them all.

The runs keep a dataset resident on the device as a dict of arrays (one leading
sample axis). For each step they gather a batch of those arrays and hand it to the
model, which turns it into network inputs on the device (`prepare`), runs the network
(`__call__`) and scores it (`loss`). The runs never look inside a model; a model never
sees the fold layout, the files or the plots.

Two kinds of model share the contract: the MER classifiers (`MERModel`, trained under
LOSO by `mer_jax.train.engine`) and the pre-training models (MA2MI, trained by
`mer_jax.train.pretraining` on frame pairs, without labels).
"""

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
from flax import nnx


class Model(nnx.Module):
    """Base of every model.

    Subclasses set `fields`, the names of the dataset features they read (e.g.
    ("flow", "strain")); only those are put on the device. `TASK` says which run trains
    them: "loso" (a classifier) or "pretrain".
    """

    TASK: ClassVar[str]
    fields: ClassVar[tuple[str, ...]] = ()

    # Constructor arguments that must equal the build's own settings (e.g. the crop size
    # landmarks are measured in): name -> how it is read from the build's metadata. A
    # config leaves them None. Default: none.
    BUILD_SETTINGS: ClassVar[Mapping[str, Callable[[Mapping[str, Any]], Any]]] = {}

    @classmethod
    def settings_from_build(cls, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The `BUILD_SETTINGS` of the build whose metadata is `metadata`."""
        return {name: read(metadata) for name, read in cls.BUILD_SETTINGS.items()}

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
        """The network's outputs (a classifier's hold at least "logits" (batch, classes))."""
        raise NotImplementedError

    def loss(
        self, outputs: dict[str, jax.Array], labels: jax.Array | None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Returns the scalar training loss and named scalar terms for the curves
        (`labels` is None for a pre-training model)."""
        raise NotImplementedError


class MERModel(Model):
    """Base of the MER classifiers (STSTNet, FR, LTR3O, DeRe-GRL, MIACNet)."""

    TASK: ClassVar[str] = "loso"

    def summaries(self, inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        """Arrays that show what a trained model learned, for `mer_jax.evaluate.figures`
        to draw (e.g. DeRe-GRL's relation weights per sample); default: none.

        Args:
            inputs: `prepare`'s output for a batch of samples (train=False).
        """
        del inputs
        return {}
