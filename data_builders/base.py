"""What every builder shares, clip datasets and pair corpora alike.

- `map_clips`: the clip stage, one independent call per clip in worker processes; a clip
  that fails (no face found, unreadable frame) does not stop the others, and the build
  then fails naming every failed clip (`clip_failure`, `raise_failures`), so nothing of
  it reads as a complete build (TFDS's incomplete directory is removed).
- `ManualDirBuilder`: the builders whose raw data is a folder the user has (`manual_dir`:
  a licensed release, or a folder of videos); `read_release` reads its annotation and
  lists its folders only, which is the dry run, and the build keeps the notes on its
  rows in the dataset's metadata ("release_notes").
"""

import abc
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, ClassVar

import cv2
import tensorflow_datasets as tfds
from tqdm.auto import tqdm

from data_builders.records import ClipOnDisk, Release
from mer_jax.errors import UserError
from mer_jax.guards import die_with_parent


def _init_worker() -> None:
    # A killed build takes its workers with it.
    die_with_parent()
    # Every worker process handles one clip at a time; OpenCV's own thread pool on
    # top of that would oversubscribe the cores.
    cv2.setNumThreads(1)


def map_clips[Result](
    function: Callable[..., Result],
    calls: Sequence[tuple[Any, ...]],
    *,
    workers: int | None,
    desc: str,
    unit: str = "clip",
) -> Iterator[tuple[int, Result | None, UserError | None]]:
    """Runs `function(*call)` for every call, in worker processes, with a progress bar.

    The clip stage of every builder: one call per clip, each independent. A call that
    raises UserError (no face, unreadable frame) does not stop the others; it is yielded
    with its error so the caller can name every failed clip at the end.

    Args:
        function: a module-level function (it is pickled into spawned workers).
        calls: the positional arguments of each call.
        workers: processes (None: all cores); never more than there are calls. With 1
            everything runs in this process, in order.
        desc, unit: the progress bar's label and unit.

    Yields:
        (index into calls, result or None, UserError or None), in completion order.
    """
    workers = max(1, min(workers or os.cpu_count() or 1, len(calls)))
    with tqdm(total=len(calls), desc=desc, unit=unit) as bar:
        if workers == 1:
            for index, call in enumerate(calls):
                try:
                    result = function(*call)
                except UserError as error:
                    bar.update()
                    yield index, None, error
                    continue
                bar.update()
                yield index, result, None
            return
        # "spawn": forking a process that may hold JAX or TFDS threads can deadlock.
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
        )
        try:
            futures = {pool.submit(function, *call): index for index, call in enumerate(calls)}
            for future in as_completed(futures):
                bar.update()
                try:
                    result = future.result()
                except UserError as error:
                    yield futures[future], None, error
                    continue
                yield futures[future], result, None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def clip_failure(clip: ClipOnDisk, error: UserError) -> str:
    """One line naming a failed clip (its annotation row or folder) and the reason, with
    where a landmarks sidecar would go when no face was found; shown at once."""
    message = f"{clip.where}: {error}" if clip.where else str(error)
    if "no face found" in message and clip.landmarks_path is None and clip.landmarks_location:
        message += f" (the sidecar would be read from {clip.landmarks_location})"
    tqdm.write(f"failed: {message}")
    return message


def raise_failures(name: str, failures: Sequence[str], num_clips: int) -> None:
    """Fails a build in which some clips failed, naming them all (after trying every clip)."""
    if failures:
        # Raising leaves the build in TFDS's incomplete directory, which is removed:
        # nothing of it reads as a finished dataset.
        raise UserError(
            f"{name}: {len(failures)} of {num_clips} clips could not be built; nothing was "
            "written. Fix or remove them (or add a landmarks sidecar where no face was "
            "found) and build again:\n  " + "\n  ".join(sorted(failures))
        )


def keep_release_notes(builder: tfds.core.DatasetBuilder, release: Release) -> None:
    """Shows the notes on a release's rows and keeps them in the build's metadata."""
    for note in release.notes:
        tqdm.write(f"{builder.name}: {note}")
    builder.info.metadata["release_notes"] = [str(note) for note in release.notes]


class ManualDirBuilder(abc.ABC):
    """Mixin of the builders read from a folder the user has (`manual_dir`).

    A subclass sets `MANUAL_DOWNLOAD_INSTRUCTIONS` (where the licence is requested,
    which layout is expected) and implements `read_release`, which only reads the
    annotation and lists folders (videos: their container header and first frame), so
    the dry run (`python -m data_builders.cli NAME --dry_run`) calls it without building.
    """

    name: ClassVar[str]
    MANUAL_DOWNLOAD_INSTRUCTIONS: ClassVar[str]
    # What manual_dir holds, in messages: "its licensed release", "a folder".
    MANUAL_DIR_HOLDS: ClassVar[str]

    @abc.abstractmethod
    def read_release(self, manual_dir: Path) -> Release:
        """The clips in `manual_dir` and the notes on its rows or folders.

        Raises:
            UserError: a missing annotation, a wrong layout (the message shows the
                expected one), a malformed row or an unreadable video (named).
        """

    def _read_manual_dir(self, dl_manager: tfds.download.DownloadManager) -> Release:
        """`read_release` of the build's manual_dir, or an error saying how to give one."""
        try:
            manual_dir = Path(dl_manager.manual_dir)
        except AssertionError:
            raise UserError(
                f"dataset {self.name} is built from {self.MANUAL_DIR_HOLDS}, which was not "
                "found: pass its folder as manual_dir (data_builders.build(..., "
                "manual_dir=DIR), --manual_dir DIR or --config.data.manual_dir=DIR).\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}"
            ) from None
        return self.read_release(manual_dir)
