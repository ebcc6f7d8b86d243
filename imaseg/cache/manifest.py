"""The cache manifest: its file name, the sample-id format, and reading it with a clear error.

The writer produces it and the reader reads it; both import this module, never each other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from imaseg.data.errors import DataError

__all__ = ["MANIFEST_NAME", "read_manifest", "sample_id"]

MANIFEST_NAME = "manifest.json"


def sample_id(case: str, index: int | None) -> str:
    """Stable id of a training sample: ``"case:007"`` for slice 7 of a volume, ``"case"`` otherwise.

    >>> sample_id("patient001_frame01", 7), sample_id("lung_001", None)
    ('patient001_frame01:007', 'lung_001')
    """
    return case if index is None else f"{case}:{index:03d}"


def read_manifest(cache_dir: str | os.PathLike[str]) -> dict:
    """The manifest of a cache folder; a :class:`DataError` naming the fix when there is none."""
    root = Path(cache_dir)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DataError(f"{root}: no {MANIFEST_NAME}; run `imaseg preprocess --data DIR --out {root}` first")
    return json.loads(path.read_text(encoding="utf-8"))
