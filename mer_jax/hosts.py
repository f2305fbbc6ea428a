"""More than one machine: JAX's multi-controller runtime, one process per host.

Every process runs the same program on the same config; together they see one global
mesh of every device (`jax.devices()`), and each process feeds and reads only its own
devices. This module is the small set of primitives the runs use to stay correct when
`jax.process_count() > 1` (and that cost nothing with one process):

- `initialize`: joins the processes (TPU pod slices and SLURM are found by JAX itself;
  explicit coordinator, process count and index for anything else, e.g. two processes
  on one machine), before anything touches a device;
- `global_array`: a host array every process holds in full, placed on a global sharding
  (each process fills only its own devices' shards);
- `to_host`: a (possibly sharded across processes) result gathered whole on every
  process;
- `is_primary`: process 0 alone writes the reports, figures, TensorBoard and
  config.json; checkpoints are written by every process, each its own shards (Orbax).
"""

import itertools
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from mer_jax.errors import UserError


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins a multi-process run, or does nothing for a single process.

    Without arguments JAX looks for a cluster it knows (a Cloud TPU pod slice, SLURM);
    none found means one process. Must run before any device is used.

    Raises:
        UserError: only some of the three explicit settings given, or no coordinator
            reachable.
    """
    # CPU collectives between processes (the multi-process tests, a CPU cluster).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    explicit = (coordinator_address, num_processes, process_id)
    if any(value is not None for value in explicit):
        if any(value is None for value in explicit):
            raise UserError(
                "--coordinator_address, --num_processes and --process_id go together (one "
                "process per host: the same address and count, a distinct id 0..n-1)."
            )
        if num_processes > 1:
            try:
                jax.distributed.initialize(coordinator_address, num_processes, process_id)
            except RuntimeError as error:
                raise UserError(
                    f"cannot join the run at {coordinator_address} as process {process_id} of "
                    f"{num_processes}: {error}"
                ) from None
        return
    try:
        jax.distributed.initialize()
    except ValueError:
        pass  # no cluster detected: a single process
    except RuntimeError as error:
        # A process that already used its devices (a second run in the same Python, as in
        # the tests) or joined before stays as it is.
        if "must be called before" not in str(error) and "only be called once" not in str(
            error
        ):
            raise


_barriers = itertools.count()


def barrier(name: str, timeout_s: int = 3600) -> None:
    """Waits until every process got here (through the coordination service, which waits
    as long as `timeout_s`): processes that compiled at different speeds meet here rather
    than in their first collective, whose connection set-up gives up after 30 s."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the coordination client JAX itself uses

    client = distributed.global_state.client
    client.wait_at_barrier(f"mer_jax-{next(_barriers)}-{name}", timeout_s * 1000)


def is_primary() -> bool:
    """Whether this process writes the run's shared outputs (process 0)."""
    return jax.process_index() == 0


def global_array(host: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """`host` (held in full by every process) as a global array on `sharding`."""
    host = np.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def global_keys(key_data: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """PRNG keys from their raw data (every process holds all of it), on `sharding`."""
    return jax.random.wrap_key_data(global_array(key_data, sharding))


def gather_from_processes(local: np.ndarray) -> np.ndarray:
    """(processes, ...) every process's own host array, on every process."""
    if jax.process_count() == 1:
        return np.asarray(local)[None]
    return np.asarray(multihost_utils.process_allgather(np.asarray(local), tiled=False))


def to_host(tree: Any) -> Any:
    """A tree of device arrays as numpy, whole on every process (gathered from the other
    processes' devices where it is sharded across them)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)
