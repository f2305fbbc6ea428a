"""Orbax checkpoints of a training state and its JSON meta, one folder each, verified.

A LOSO run keeps one folder per chunk of stacked replicas (`checkpoints/chunk_000/`:
the stacked state, and meta saying which (fold, seed) each row is and the curves so
far); pre-training keeps one (`checkpoints/pretrain/`). A run resumes exactly where it
stopped, and `--mode=eval` restores the final weights onto whatever devices it has,
through abstract targets.

Nothing damaged is used silently: every save records a SHA-256 of the state's bytes in
its meta, and every restore recomputes it. A step that does not restore or does not
match is `CheckpointDamaged`, naming its folder; training then falls back to the
previous intact step (the last two are kept), after moving the damaged one aside
(`restore_latest`). An asynchronous save that failed stops the run with its reason.
"""

import copy
import datetime
import hashlib
import pathlib
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from mer_jax import hosts
from mer_jax.errors import UserError

# Steps kept per folder: the latest and the one before, to fall back to.
KEEP = 2


class CheckpointDamaged(UserError):
    """A checkpoint step that cannot be restored or whose state fails its checksum."""

    def __init__(self, directory: pathlib.Path, step: int, reason: str) -> None:
        self.directory = directory
        self.step = step
        self.reason = reason
        super().__init__(f"checkpoint step {step} in {directory} is damaged ({reason})")


class CheckpointSaveError(UserError):
    """An (asynchronous) checkpoint save failed."""


def state_checksum(state: Any) -> str:
    """SHA-256 over every leaf of a state (dtype, shape and bytes), in tree order."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(hosts.to_host(state)):
        if jnp.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        array = np.ascontiguousarray(np.asarray(leaf))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


class Checkpointer:
    """Saves and restores a training state and its meta in one folder (last two steps)."""

    def __init__(self, directory: pathlib.Path, *, async_save: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=KEEP, enable_async_checkpointing=async_save, create=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def steps(self) -> list[int]:
        """The steps on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Saves `state` and `meta` (plus the state's checksum) as `step`, asynchronously.

        Raises:
            CheckpointSaveError: this or an earlier asynchronous save failed.
        """
        # A deep copy: the save is asynchronous and the caller goes on updating its meta
        # (the curves, the timing), which must not leak into this step's record.
        meta = copy.deepcopy({**meta, "state_sha256": state_checksum(state)})
        try:
            self._manager.check_for_errors()
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
                ),
            )
        except Exception as error:  # Orbax and TensorStore raise many types
            raise CheckpointSaveError(
                f"saving checkpoint step {step} in {self.directory} failed ({_reason(error)}); "
                "the run stopped: fix the cause (disk space, permissions) and rerun to resume "
                "from the last saved step."
            ) from error

    def restore_meta(self, step: int) -> dict[str, Any]:
        """The meta of `step`.

        Raises:
            CheckpointDamaged: it cannot be read.
        """
        try:
            args = ocp.args.Composite(meta=ocp.args.JsonRestore())
            return self._manager.restore(step, args=args).meta
        except Exception as error:
            raise CheckpointDamaged(self.directory, step, _reason(error)) from error

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """Restores `step` onto the shardings given by `abstract_state` (ShapeDtypeStructs)
        and verifies its checksum.

        Raises:
            CheckpointDamaged: it cannot be restored, or its state is not what was saved.
        """
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as error:
            raise CheckpointDamaged(self.directory, step, _reason(error)) from error
        expected = restored.meta.get("state_sha256")
        if expected is None or state_checksum(restored.state) != expected:
            what = "no checksum in its meta" if expected is None else "checksum mismatch"
            raise CheckpointDamaged(self.directory, step, f"{what}: its state is not as saved")
        return restored.state, restored.meta

    def restore_model(self, step: int, abstract_model_state: dict[str, Any]) -> dict[str, Any]:
        """Restores only the model's part of a saved training state ("params", "rest"),
        without the optimizer's, whose layout prediction neither needs nor can rebuild
        (it depends on the optimizer settings of the run, e.g. `init_from`'s branches).

        Args:
            step: the checkpoint's step.
            abstract_model_state: {"params": ..., "rest": ...} of ShapeDtypeStructs
                placed where the arrays should go.

        Raises:
            CheckpointDamaged: it cannot be restored.
        """
        restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_model_state)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.PyTreeRestore(
                        abstract_model_state, restore_args=restore_args, partial_restore=True
                    )
                ),
            )
        except Exception as error:
            raise CheckpointDamaged(self.directory, step, _reason(error)) from error
        return restored.state

    def restore_latest(
        self, abstract_state: Any, set_aside: pathlib.Path | None
    ) -> tuple[int, Any, dict[str, Any] | None, list[str]]:
        """The newest intact step (0, None, None when there is none yet).

        A damaged step is moved into `set_aside` (so training can save that step again)
        and the previous one is tried; with `set_aside` None it is an error.

        Returns:
            (step, state, meta, notes): notes say what was set aside.

        Raises:
            CheckpointDamaged: every step on disk is damaged; the message says how to
                restart.
        """
        notes = []
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore(step, abstract_state)
                return step, state, meta, notes
            except CheckpointDamaged as damaged:
                if set_aside is None:
                    raise UserError(
                        f"{damaged}; move it out of {self.directory} (or rerun as a single "
                        "process, which sets it aside) to resume from the previous step."
                    ) from None
                stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                target = set_aside / f"{self.directory.name}-step{step}-{stamp}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(self.directory / str(step)), target)
                self._manager.reload()
                notes.append(f"{damaged}; moved aside to {target}")
        if notes:
            raise UserError(
                f"{notes[-1]}. No intact checkpoint is left in {self.directory}: delete that "
                "folder to train these replicas again from the start."
            )
        return 0, None, None, notes

    def close(self) -> None:
        """Waits for pending asynchronous saves, then releases the manager.

        Raises:
            CheckpointSaveError: a pending save failed.
        """
        try:
            self._manager.wait_until_finished()
            self._manager.check_for_errors()
        except Exception as error:
            raise CheckpointSaveError(
                f"saving a checkpoint in {self.directory} failed ({_reason(error)}); fix the "
                "cause (disk space, permissions) and rerun to resume from the last saved step."
            ) from error
        finally:
            self._manager.close()


def abstract_like(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """ShapeDtypeStructs of `tree` placed on `sharding`: the restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
