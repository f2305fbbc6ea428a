"""Guards around what the operating system does to a run: nothing lost, nothing silent.

- `FileLock`: an exclusive lock on a workdir or a data build in progress. A second
  process is told who holds it (pid, host, start time); the lock of a process that died
  is released by the kernel and taken over with a note.
- `die_with_parent`: worker processes (clip features, the synthetic generator) end when
  the process that started them is killed, instead of computing on as orphans.
- `atomic_write_text`: a file is either its old or its new content, never half-written.
- `os_error_message`: one line for a full disk, a read-only or inaccessible path.
- `GracefulStop`: SIGINT/SIGTERM stop a training run at its next sync point, after a
  checkpoint, with a line saying it can be resumed; elsewhere they interrupt at once.

This module uses the standard library only, so every layer may use it.
"""

import contextlib
import ctypes
import datetime
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from mer_jax.errors import UserError


class LockedError(UserError):
    """Another live process holds the lock."""


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


class FileLock:
    """An exclusive, non-blocking (or waiting) lock held through an open lock file.

    The kernel releases an flock when its holder dies, however it dies (SIGKILL
    included), so a stale lock never blocks; the file's text (pid, host, start time) says
    who holds or held it.
    """

    def __init__(self, path: Path, what: str, *, wait: bool = False) -> None:
        """`what` names the locked thing in messages, e.g. "workdir runs/fr"; with `wait`,
        entering the lock waits for its holder instead of failing (see `acquire`)."""
        self.path = Path(path)
        self.what = what
        self.wait = wait
        self._handle: Any = None
        self.previous: dict[str, Any] | None = None

    def _holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, *, wait: bool = False) -> str | None:
        """Takes the lock; returns a note when it took over a dead process's lock.

        Args:
            wait: block until the holder releases it (a build in progress) instead of
                failing at once (a workdir).

        Raises:
            LockedError: (without `wait`) a live process holds it; the message says which.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            if not wait:
                handle.close()
                raise LockedError(
                    f"{self.what} is in use by pid {holder.get('pid', '?')} on host "
                    f"{holder.get('host', '?')} (since {holder.get('started', '?')}); wait for "
                    "that run to finish or stop it, or use another folder."
                ) from None
            print(
                f"waiting for {self.what}, held by pid {holder.get('pid', '?')} on "
                f"{holder.get('host', '?')} since {holder.get('started', '?')} ...",
                file=sys.stderr,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        previous = self._holder()
        note = None
        if previous.get("pid") and previous.get("pid") != os.getpid():
            self.previous = previous
            alive = previous.get("host") == socket.gethostname() and pid_alive(previous["pid"])
            if not alive:
                note = (
                    f"note: took over the lock of {self.what} left by pid {previous['pid']} on "
                    f"{previous.get('host', '?')} (started {previous.get('started', '?')}), "
                    "which is no longer running."
                )
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": datetime.datetime.now().isoformat(timespec="seconds"),
                }
            )
        )
        handle.flush()
        self._handle = handle
        return note

    def release(self) -> None:
        """Releases the lock (the file stays; its text says who held it last)."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.seek(0)
                self._handle.truncate()
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> "FileLock":
        note = self.acquire(wait=self.wait)
        if note:
            print(note, file=sys.stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Makes this (worker) process end when its parent dies, and leave SIGINT to it.

    Linux's PR_SET_PDEATHSIG: a SIGKILLed build takes its workers with it. A Ctrl-C
    reaches the whole process group; the parent shuts the pool down, so a worker ignores
    SIGINT rather than printing its own traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the call above
            os._exit(1)


def atomic_write_text(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as output:
            output.write(text)
            output.flush()
            os.fsync(output.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def staged_folder(out: Path, before_rename: Any = None) -> Iterator[Path]:
    """A folder to fill in place of `out` (a sibling `.<name>.partial-<pid>`), renamed to
    `out` when the block ends without error (an empty `out` is replaced), removed if it
    raises: `out` is whole or absent, never half-written. `before_rename()` runs just
    before the rename (e.g. to check `out` did not appear meanwhile). What killed writers
    left (their pid gone) is removed first, never read."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for left in out.parent.glob(f".{out.name}.partial-*"):
        pid = left.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir()
        yield staging
        if before_rename is not None:
            before_rename()
        if out.exists():
            out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing parent folder."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_mb(path: Path) -> float:
    """Free space in MB on the file system that holds (or would hold) `path`."""
    return shutil.disk_usage(_existing_ancestor(path)).free / 2**20


def check_writable(path: Path, what: str) -> None:
    """Creates the folder `path` if needed and proves a file can be written in it (a real
    probe: permission bits say nothing to root on a read-only file system).

    Raises:
        UserError: one line naming `what`, the path and why.
    """
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise UserError(f"{what} {target} is a file, not a folder; give a folder.")
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".write-probe-"):
            pass
    except OSError as error:
        raise UserError(
            f"{what} {target} is not writable ({os.strerror(error.errno or 0)}); give a "
            "writable folder."
        ) from None


def os_error_message(error: OSError) -> str | None:
    """One line for an OSError the user can fix (full disk, read-only or forbidden path,
    a path that is a file), or None for any other."""
    path = error.filename or ""
    if error.errno == errno.ENOSPC:
        where = f" holding {path}" if path else ""
        free = f" ({free_mb(Path(path)):.0f} MB free)" if path else ""
        return (
            f"no space left on the disk{where}{free}: free some space (a LOSO run's "
            "checkpoints need about twice its model states, a build about its dataset size) "
            "and rerun the same command; it resumes."
        )
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (
            f"cannot write {path or 'a file'}: {os.strerror(error.errno)}; give a writable "
            "--workdir or --config.data.data_dir."
        )
    if error.errno in (errno.ENOTDIR, errno.EEXIST) and path:
        return f"{path}: {os.strerror(error.errno)}; a folder was expected there."
    return None


class Interrupted(Exception):
    """The user stopped the run (SIGINT/SIGTERM); it can be resumed."""

    def __init__(self, signum: int, where: str = "") -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name}{where}; rerun the same command to resume (nothing is lost)."
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class GracefulStop:
    """SIGINT/SIGTERM handling for a run: inside `deferred()` a signal only sets
    `requested` (the training loop stops at its next sync point, after a checkpoint);
    elsewhere it raises `Interrupted` at once."""

    def __init__(self) -> None:
        self.requested: int | None = None
        self._deferring = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        again = self.requested is not None
        self.requested = signum
        if not self._deferring or again:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator["GracefulStop"]:
        """Installs the handlers for the duration of a run (main thread only)."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals only set `requested` while inside (a dispatch, a checkpoint)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False


# The process's one stop handler: launch.py installs it, the training loops consult it.
STOP = GracefulStop()
