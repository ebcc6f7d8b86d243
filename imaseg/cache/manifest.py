"""The cache manifest: its file name, the sample-id format, and reading it with a clear error.

The writer produces it and the reader reads it; both import this module, never each other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imaseg.data.errors import DataError

__all__ = ["MANIFEST_NAME", "class_values", "label_values", "read_manifest", "sample_id"]

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


def class_values(declared, seen) -> list[int]:
    """The label value of each class index, ``values[i]``.

    Values up to 255 map to themselves (classes ``0..max``, gaps kept as unused classes, as before); a
    set with any value above 255 is compacted to ``0..K-1`` in sorted order, so label 1000 needs no
    1001-class network. The cache stores raw values; the reader maps them to classes and outputs map
    classes back (:func:`imaseg.cache.reader.CaseStore.to_values`).

    >>> class_values({0: "bg", 1: "a", 2: "b"}, [0, 1])
    [0, 1, 2]
    >>> class_values({}, [0, 1, 256, 1000])
    [0, 1, 256, 1000]
    """
    values = sorted({0, *(int(v) for v in declared), *(int(v) for v in seen)})
    if values[-1] <= 255:
        return list(range(values[-1] + 1))
    return values


def label_values(classes: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Class indices -> the label values of the source data (what outputs write); ``values`` from
    :func:`class_values`. The identity leaves the array as it is.

    >>> label_values(np.array([0, 1, 2]), [0, 1, 1000]).tolist()
    [0, 1, 1000]
    """
    table = np.asarray(values, dtype=np.int64)
    if np.array_equal(table, np.arange(len(table))):
        return classes
    mapped = table[np.asarray(classes, dtype=np.int64)]
    return mapped.astype(np.uint16 if mapped.max(initial=0) <= 65535 else np.int32)
