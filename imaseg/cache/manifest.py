"""The cache manifest: :class:`Manifest`, its file name and version, sample ids and class values.

``CACHE/manifest.json`` is written by :func:`imaseg.cache.writer.preprocess_dataset` and read by
:class:`imaseg.cache.reader.CaseStore`; both go through :class:`Manifest` (and :class:`CaseMeta` for each
case), so the file's keys are spelled here, in :mod:`imaseg.cache.case_meta` and, for the part a run
keeps (``preprocessing.json``), in :mod:`imaseg.cache.run_record` only. The writer and the reader import
this module, never each other.

Versions: a manifest without ``version`` is version 1 (every cache so far); one of a newer or unknown
version, or one that lacks a required key, is refused with a :class:`DataError` that names the file and
says to re-run ``imaseg preprocess``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imaseg.cache.case_meta import REPROCESS, CaseMeta, missing_keys, sample_id
from imaseg.cache.split import FoldSplit
from imaseg.data.errors import DataError
from imaseg.run import RunDir

__all__ = [
    "CASES_DIR",
    "CONFIG_NAME",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "CaseMeta",
    "DataShape",
    "DatasetSource",
    "FoldSplit",
    "Manifest",
    "class_values",
    "label_values",
    "read_manifest",
    "sample_id",
]

MANIFEST_NAME = "manifest.json"
CASES_DIR = "cases"  # CASE.npz files, named relative to the cache folder in each CaseMeta.file
CONFIG_NAME = RunDir.CONFIG  # the resolved preprocessing config beside the manifest: named as a run's
MANIFEST_VERSION = 1  # manifests without a version are version 1
_REQUIRED = ("dataset", "modality", "labels", "num_classes", "in_channels", "spatial_dims", "config", "cases", "splits")


@dataclass(frozen=True)
class DataShape:
    """What a network is built for: channels in, classes out (background included), spatial dims."""

    in_channels: int
    num_classes: int
    spatial_dims: int

    def to_json(self) -> dict[str, int]:
        return {"in_channels": self.in_channels, "num_classes": self.num_classes, "spatial_dims": self.spatial_dims}

    def mismatches(self, stored: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
        """``{key: (stored, self)}`` for each of ``stored``'s values (e.g. a checkpoint's) that differs.

        >>> DataShape(1, 4, 2).mismatches({"in_channels": 1, "num_classes": 3})
        {'num_classes': (3, 4)}
        """
        return {k: (int(stored[k]), v) for k, v in self.to_json().items() if k in stored and int(stored[k]) != v}


@dataclass(frozen=True)
class DatasetSource:
    """What the source folder declared: its name, layout (``msd`` / ``nnunet`` / ``plain``) and modality."""

    name: str = ""
    layout: str = ""
    declared_modality: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "layout": self.layout, "declared_modality": self.declared_modality}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DatasetSource:
        return cls(*(str(data.get(key) or "") for key in ("name", "layout", "declared_modality")))


@dataclass(frozen=True)
class Manifest:
    """A cache's manifest: its data, classes, cases and splits (see :mod:`imaseg.cache.writer` for the layout).

    ``labels`` maps class indices to names; ``class_values[i]`` is the label value of class ``i``;
    ``config`` is the resolved preprocessing config as stored; ``splits`` maps each fold to its sides.
    ``source`` (the file it was read from) only serves error messages.
    """

    created: str
    data_dir: str
    dataset: DatasetSource
    modality: str
    labels: dict[int, str]
    num_classes: int
    class_values: tuple[int, ...]
    in_channels: int
    spatial_dims: int
    config: dict[str, Any]
    cases: tuple[CaseMeta, ...]
    splits: dict[int, FoldSplit]
    num_samples: int
    version: int = MANIFEST_VERSION
    source: str = field(default=MANIFEST_NAME, compare=False, repr=False)

    @functools.cached_property
    def _by_case(self) -> dict[str, CaseMeta]:
        return {c.case: c for c in self.cases}

    @property
    def case_ids(self) -> list[str]:
        """Every case id, sorted."""
        return sorted(self._by_case)

    def case(self, case_id: str) -> CaseMeta:
        """One case's record; a ``KeyError`` naming the manifest when it holds no such case."""
        if case_id not in self._by_case:
            raise KeyError(f"case {case_id!r} is not in {self.source}")
        return self._by_case[case_id]

    def patient(self, case_id: str) -> str:
        """The patient group of a case (the case id itself where the cache has no grouping)."""
        return self.case(case_id).patient

    def split(self, fold: int) -> FoldSplit:
        """The sides of ``fold``; a ``ValueError`` listing the folds there are."""
        if fold not in self.splits:
            raise ValueError(f"`fold` must be one of {sorted(self.splits)}, got {fold}")
        return self.splits[fold]

    @property
    def class_names(self) -> dict[int, str]:
        return dict(self.labels)

    @property
    def data_shape(self) -> DataShape:
        return DataShape(self.in_channels, self.num_classes, self.spatial_dims)

    @property
    def source_dims(self) -> int:
        """Spatial dims of the source images (3 for 2D slices of volumes; ``spatial_dims`` without cases)."""
        return max((c.source_dims for c in self.cases), default=self.spatial_dims)

    @property
    def dataset_name(self) -> str:
        return self.dataset.name

    def labels_json(self) -> dict[str, str]:
        """``labels`` as stored (JSON object keys are strings)."""
        return {str(k): v for k, v in self.labels.items()}

    def checkpoint_data(self) -> dict[str, Any]:
        """What a checkpoint records of the data it was trained on (checked when it is loaded)."""
        return {**self.data_shape.to_json(), "labels": self.labels_json()}

    def to_json(self) -> dict[str, Any]:
        """The stored manifest, keys in the order the writer has always used."""
        return {
            "version": self.version,
            "created": self.created,
            "data_dir": self.data_dir,
            "dataset": self.dataset.to_json(),
            "modality": self.modality,
            "labels": self.labels_json(),
            "num_classes": self.num_classes,
            "class_values": list(self.class_values),
            "in_channels": self.in_channels,
            "spatial_dims": self.spatial_dims,
            "config": dict(self.config),
            "cases": [c.to_json() for c in self.cases],
            "splits": {str(k): s.to_json() for k, s in self.splits.items()},
            "num_samples": self.num_samples,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str | os.PathLike[str] = MANIFEST_NAME) -> Manifest:
        """Parse a stored manifest; manifests without ``version`` or ``class_values`` (older caches) load.

        Raises:
            DataError: a newer or unknown version, missing keys or malformed values (naming ``source`` and
                the fix).
        """
        missing_keys(data, _REQUIRED, source, "the cache manifest")
        version = data.get("version", 1)
        if not isinstance(version, int) or not 1 <= version <= MANIFEST_VERSION:
            newer = isinstance(version, int) and version > MANIFEST_VERSION
            raise DataError(
                f"{source}: manifest version {version!r} is {'newer than' if newer else 'not one of'} the versions "
                f"this imaseg reads (1..{MANIFEST_VERSION}); {'upgrade imaseg or ' if newer else ''}"
                f"{REPROCESS}",
                [source],
            )
        try:
            return cls._parse(data, version, str(source))
        except DataError:
            raise
        except (TypeError, ValueError, AttributeError) as error:
            raise DataError(f"{source}: malformed cache manifest ({error}); {REPROCESS}", [source]) from None

    @classmethod
    def _parse(cls, data: Mapping[str, Any], version: int, source: str) -> Manifest:
        num_classes = int(data["num_classes"])
        cases = tuple(CaseMeta.from_json(c, source=source) for c in data["cases"])
        return cls(
            created=str(data.get("created", "")),
            data_dir=str(data.get("data_dir", "")),
            dataset=DatasetSource.from_json(data["dataset"] or {}),
            modality=str(data["modality"]),
            labels={int(k): str(v) for k, v in data["labels"].items()},
            num_classes=num_classes,
            class_values=tuple(int(v) for v in (data.get("class_values") or range(num_classes))),
            in_channels=int(data["in_channels"]),
            spatial_dims=int(data["spatial_dims"]),
            config=dict(data["config"]),
            cases=cases,
            splits={int(k): FoldSplit.from_json(v) for k, v in data["splits"].items()},
            num_samples=int(data.get("num_samples", sum(len(c.sample_ids) for c in cases))),
            version=version,
            source=source,
        )

    @classmethod
    def read(cls, cache_dir: str | os.PathLike[str]) -> Manifest:
        """The manifest of a cache folder.

        Raises:
            DataError: there is none, or it is not a manifest this imaseg reads (naming the fix).
        """
        root = Path(cache_dir)
        path = root / MANIFEST_NAME
        if not path.is_file():
            raise DataError(
                f"{root}: no {MANIFEST_NAME}; run `imaseg preprocess --data DIR --out {root}` first", [root]
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not valid JSON ({error}); {REPROCESS}", [path]) from None
        return cls.from_json(data, source=path)


def read_manifest(cache_dir: str | os.PathLike[str]) -> Manifest:
    """The manifest of a cache folder (:meth:`Manifest.read`): a :class:`DataError` naming the fix when there is none."""
    return Manifest.read(cache_dir)


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
