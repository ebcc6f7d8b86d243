"""One live writer per folder: a lock file holding its owner's pid, host, start time and command.

``imaseg train --out RUN`` takes ``RUN``'s lock before it reads or writes anything there, so a second
``train`` on the same folder is refused with the owner named instead of mixing two runs' checkpoints. The
claim itself is an ``flock`` on the lock file (POSIX), which the kernel drops when its process dies: a lock
file left by a killed process is stale, detected as such, and taken over with a warning. Where ``flock``
is not available, a lock of this host whose pid no longer runs counts as stale.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "train.lock"
>>> with FolderLock(path, "run folder"):
...     try:
...         FolderLock(path, "run folder").acquire()
...     except FolderInUseError as error:
...         print("in use by another imaseg process" in str(error))
True
>>> path.exists()
False
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderInUseError", "FolderLock"]

logger = logging.getLogger(__name__)


class FolderInUseError(FileExistsError):
    """Another live process holds the folder; the message names it (pid, host, command) and the way out."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _owner() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "command": " ".join(sys.argv)[:300],
    }


def _read_owner(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0 or sys.platform == "win32":  # os.kill would end it on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def _flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: this file system cannot lock."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise
    return True


def _describe(owner: dict) -> str:
    if not owner:
        return "an unknown process"
    return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, since {owner.get('started', '?')}" + (
        f": {owner['command']}" if owner.get("command") else ""
    )


class FolderLock:
    """An exclusive, process-wide claim on a folder through ``lock_file`` (a context manager).

    Args:
        lock_file: the lock file (created; removed on release).
        what: how messages call the folder, e.g. ``"run folder"``.
        enabled: ``False`` makes the lock a no-op (e.g. on the non-main ranks of a distributed run).
    """

    def __init__(self, lock_file: str | os.PathLike[str], what: str = "folder", *, enabled: bool = True) -> None:
        self.path = Path(lock_file)
        self.what = what
        self.enabled = enabled
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise :class:`FolderInUseError` naming the live owner.

        Raises:
            FolderInUseError: another live process holds it.
        """
        if not self.enabled or self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(5):  # the owner may remove the file between our open and our lock: open it again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                held = _flock(fd)
                owner = _read_owner(fd)
                if held is False or (held is None and owner and not self._stale_without_flock(owner)):
                    raise self._in_use(owner)
                if not _same_file(fd, self.path):
                    os.close(fd)
                    continue
                if owner:
                    logger.warning(
                        "%s: taking over a stale lock of %s (that process is gone)", self.path, _describe(owner)
                    )
                _write_owner(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.close(fd)
                raise
            self._fd = fd
            return
        raise self._in_use({})

    def release(self) -> None:
        """Remove the lock file and drop the claim (a no-op when not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)  # closing drops the flock
        self._fd = None

    @staticmethod
    def _stale_without_flock(owner: dict) -> bool:
        return owner.get("host") == socket.gethostname() and not _pid_alive(owner.get("pid"))

    def _in_use(self, owner: dict) -> FolderInUseError:
        folder = self.path.parent
        return FolderInUseError(
            f"{folder}: this {self.what} is in use by another imaseg process ({_describe(owner)}); wait for it to "
            f"finish or choose another folder (if that process is gone, delete {self.path})"
        )


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, there = os.fstat(fd), path.stat()
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _write_owner(fd: int) -> None:
    data = json.dumps(_owner()).encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data + b"\n")
    with contextlib.suppress(OSError):
        os.fsync(fd)
