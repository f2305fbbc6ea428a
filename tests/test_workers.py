"""The one worker pool: spawned processes (or this one), results in order, errors carried."""

import os

import pytest

from data_builders.base import map_clips
from mer_jax.errors import UserError
from mer_jax.workers import available_cores, worker_pool


def square_and_pid(value: int) -> tuple[int, int]:
    """A task: its result and the process that computed it."""
    if value < 0:
        raise UserError(f"clip {value} has no face")
    return value * value, os.getpid()


def test_two_workers_run_in_other_processes_in_order():
    with worker_pool(2) as pool:
        results = list(pool.map(square_and_pid, range(5)))
    assert [square for square, _ in results] == [0, 1, 4, 9, 16]
    assert os.getpid() not in {pid for _, pid in results}


def test_one_worker_runs_here_and_raises_here():
    with worker_pool(1) as pool:
        assert list(pool.map(square_and_pid, [3])) == [(9, os.getpid())]
        assert pool.submit(square_and_pid, 2).result() == (4, os.getpid())
        with pytest.raises(UserError, match="no face"):
            list(pool.map(square_and_pid, [-1]))
    with pytest.raises(ValueError, match="at least 1"):
        with worker_pool(0):
            pass
    assert available_cores() >= 1


@pytest.mark.parametrize("workers", [1, 2])
def test_map_clips_yields_every_clip_with_its_error(workers):
    calls = [(2,), (-1,), (3,)]
    outcomes = list(map_clips(square_and_pid, calls, workers=workers, desc="test"))
    assert [index for index, _, _ in outcomes] == [0, 1, 2]
    assert [result[0] if result else None for _, result, _ in outcomes] == [4, None, 9]
    assert [str(error) if error else None for _, _, error in outcomes] == [
        None,
        "clip -1 has no face",
        None,
    ]
