"""Orbax checkpoints of a training state and its JSON meta, one folder each.

A LOSO run keeps one folder per chunk of stacked replicas (`checkpoints/chunk_000/`:
the stacked state, and meta saying which (fold, seed) each row is and the curves so
far); pre-training keeps one (`checkpoints/pretrain/`). A run resumes exactly where it
stopped, and `--mode=eval` restores the final weights onto whatever devices it has,
through abstract targets.
"""

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores a training state and its meta in one folder (latest step kept)."""

    def __init__(self, directory: pathlib.Path, *, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=1, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
        )

    def restore_meta(self, step: int) -> dict[str, Any]:
        restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return restored.meta

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Restores onto the shardings given by `abstract_state` (ShapeDtypeStructs)."""
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return restored.state, restored.meta

    def restore_model(self, step: int, abstract_model_state: dict[str, Any]) -> dict[str, Any]:
        """Restores only the model's part of a saved training state ("params", "rest"),
        without the optimizer's, whose layout prediction neither needs nor can rebuild
        (it depends on the optimizer settings of the run, e.g. `init_from`'s branches).

        Args:
            step: the checkpoint's step.
            abstract_model_state: {"params": ..., "rest": ...} of ShapeDtypeStructs
                placed where the arrays should go.
        """
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_model_state)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(
                    abstract_model_state, restore_args=restore_args, partial_restore=True
                )
            ),
        )
        return restored.state

    def close(self) -> None:
        """Waits for pending asynchronous saves, then releases the manager."""
        self._manager.wait_until_finished()
        self._manager.close()


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """ShapeDtypeStructs of `tree` placed on `sharding`: the restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
