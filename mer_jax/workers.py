"""The one pool of worker processes of the CPU stages that run an independent task per
item: the clips a build preprocesses (`data_builders.base.map_clips`) and the faces and
clips the synthetic generator renders (`mer_jax.synthetic.generator`).

Workers are spawned, not forked: the caller has usually imported JAX or TFDS, which are
multithreaded, and forking a multithreaded process can deadlock. They end with the
process that started them (`guards.die_with_parent`), and each runs one OpenCV thread:
one process per core already, OpenCV's own thread pool on top would oversubscribe them.
A caller that starts workers needs the usual `if __name__ == "__main__":` guard.
"""

import concurrent.futures
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

import cv2

from mer_jax.guards import die_with_parent


def available_cores() -> int:
    """The cores this process may run on (its affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _init_worker() -> None:
    die_with_parent()
    cv2.setNumThreads(1)


class _InProcess(concurrent.futures.Executor):
    """One worker: every task runs in this process, in order, when its result is asked
    for (so a progress bar moves with them and nothing is spawned)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - the future carries it to the caller
            future.set_exception(error)
        return future

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], **_: Any) -> Iterator[Any]:
        return map(fn, *iterables)


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[concurrent.futures.Executor]:
    """An executor of `workers` processes (1: this process); on leaving, tasks not yet
    started are dropped (an error, or a caller that stopped reading) and the workers end.

    Raises:
        ValueError: workers below 1.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    if workers == 1:
        yield _InProcess()
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
