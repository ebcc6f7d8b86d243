"""The error raised for bad input data: always names the file(s) and what to do about it."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input data. ``paths`` holds the offending files or folders (also named in the message)."""

    def __init__(self, message: str, paths: Sequence[str | os.PathLike[str]] = ()) -> None:
        super().__init__(message)
        self.paths = [str(p) for p in paths]
