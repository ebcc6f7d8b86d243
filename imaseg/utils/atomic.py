"""Atomic file writing: write to a temporary file in the same folder, then rename over the target.

A reader (or a resumed run) therefore sees either the old complete file or the new complete file,
never a half-written one, even when the process is killed mid-write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "OutputError",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "blocking_file",
    "disk_is_full",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# what open() would give a new file (0644 under the usual umask 022); mkstemp's 0600 would hide every
# output, report and checkpoint from colleagues
_FILE_MODE = 0o666 & ~_umask()


def blocking_file(path: str | os.PathLike[str]) -> Path | None:
    """A file standing where ``path`` or one of its folders should be (why a write there fails), if any;
    folders that cannot be looked into (permissions) are passed over, never raised from."""
    path = Path(path)
    for candidate in (path, *path.parents):
        try:
            if candidate.exists() and not candidate.is_dir():
                return candidate
        except OSError:
            continue
    return None


_DISK_FULL_FREE_BYTES = 1024**2  # a write that fails with less free space than this ran out of it


def disk_is_full(folder: str | os.PathLike[str]) -> bool:
    """Whether the file system of ``folder`` has (almost) no space left for this user."""
    try:
        return shutil.disk_usage(folder).free < _DISK_FULL_FREE_BYTES
    except OSError:
        return False


class OutputError(OSError):
    """An output could not be written: the message names the file meant (not a temporary one) and the reason."""

    def __init__(self, target: str | os.PathLike[str], error: OSError) -> None:
        super().__init__(error.errno, error.strerror or str(error), str(target))
        self.target = str(target)

    def __str__(self) -> str:
        reason = self.strerror or "unknown error"
        blocker = blocking_file(Path(self.target).parent)  # the target itself may exist: it is being replaced
        if blocker is not None:
            reason = f"{blocker} is a file, not a folder"
        if self.errno in (errno.ENOSPC, errno.EDQUOT):
            full = "the disk is full (ENOSPC" if self.errno == errno.ENOSPC else "the disk quota is used up (EDQUOT"
            return (
                f"cannot write {self.target}: {full}: {reason}); free some space and rerun (the files written "
                "before are intact)"
            )
        return f"cannot write {self.target}: {reason}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched; an ``OSError`` (read-only
    folder, full disk, a file where a folder should be) becomes an :class:`OutputError` naming ``path``, and
    so does any other failure of the writer (e.g. torch's ``RuntimeError``) when the disk is full.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:
        raise OutputError(target, error) from error
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, target)
    except OutputError:
        raise
    except OSError as error:
        raise OutputError(target, error) from error
    except Exception as error:
        if disk_is_full(target.parent):  # a writer that hides the OS error (torch's "file write failed")
            raise OutputError(target, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))) from error
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (NaN is written as ``null``)."""
    text = json.dumps(_nan_to_none(data), indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:  # NaN
        return None
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value
