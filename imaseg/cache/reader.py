"""Reading a preprocessed cache: whole cases (for evaluation) and in-memory sample sets (for training)."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import torch

from imaseg.cache.case_meta import CaseMeta
from imaseg.cache.manifest import MANIFEST_NAME, Manifest, label_values
from imaseg.cache.split import FoldSplit
from imaseg.data.errors import DataError

__all__ = ["CachedCase", "CaseStore", "SampleSet", "from_slices", "to_slices"]

SPLITS = (*FoldSplit.SIDES, "all")


@overload
def to_slices(volume: np.ndarray, slice_axis: int) -> np.ndarray: ...
@overload
def to_slices(volume: torch.Tensor, slice_axis: int) -> torch.Tensor: ...
def to_slices(volume: np.ndarray | torch.Tensor, slice_axis: int) -> np.ndarray | torch.Tensor:
    """``(C, *spatial)`` -> ``(S, C, *plane)``: the slices along spatial axis ``slice_axis`` as a batch."""
    axis = slice_axis + 1
    if isinstance(volume, torch.Tensor):
        return volume.movedim(axis, 0)
    return np.moveaxis(volume, axis, 0)


@overload
def from_slices(slices: np.ndarray, slice_axis: int) -> np.ndarray: ...
@overload
def from_slices(slices: torch.Tensor, slice_axis: int) -> torch.Tensor: ...
def from_slices(slices: np.ndarray | torch.Tensor, slice_axis: int) -> np.ndarray | torch.Tensor:
    """Inverse of :func:`to_slices`: ``(S, C, *plane)`` -> ``(C, *spatial)``."""
    axis = slice_axis + 1
    if isinstance(slices, torch.Tensor):
        return slices.movedim(0, axis)
    return np.moveaxis(slices, 0, axis)


@dataclass
class CachedCase:
    """One preprocessed case: image ``(C, *spatial)``, label ``(*spatial)``, grids and metadata."""

    case: str
    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    source_affine: np.ndarray
    meta: CaseMeta


@dataclass
class SampleSet:
    """Samples held in memory: ``images (N, C, *S)`` float32, ``labels (N, 1, *S)`` uint8, stable ``ids``."""

    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    cases: list[str]

    def __len__(self) -> int:
        return len(self.ids)


class CaseStore:
    """Access to a cache folder written by :func:`imaseg.cache.preprocess_dataset`."""

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.root = Path(cache_dir)
        self.manifest = Manifest.read(self.root)
        self._values = np.asarray(self.manifest.class_values, dtype=np.int64)
        self._identity = bool(np.array_equal(self._values, np.arange(len(self._values))))

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def in_channels(self) -> int:
        return self.manifest.in_channels

    @property
    def spatial_dims(self) -> int:
        return self.manifest.spatial_dims

    @property
    def labels(self) -> dict[int, str]:
        return self.manifest.class_names

    @property
    def class_values(self) -> list[int]:
        """The label value of each class index (identity unless a value exceeds 255)."""
        return self._values.tolist()

    def to_classes(self, raw: np.ndarray, where: str | os.PathLike[str] = "") -> np.ndarray:
        """Stored label values -> class indices ``0..K-1`` (uint8 while K <= 256)."""
        if self._identity:
            return raw
        index = np.clip(np.searchsorted(self._values, raw), 0, len(self._values) - 1)
        if not np.array_equal(self._values[index], raw):
            unknown = sorted(set(np.unique(raw).tolist()) - set(self._values.tolist()))
            raise DataError(
                f"{where}: label values {unknown} are not in the cache's classes; rerun `imaseg preprocess`"
            )
        return index.astype(np.uint8 if len(self._values) <= 256 else np.int16)

    def to_values(self, classes: np.ndarray) -> np.ndarray:
        """Class indices -> the label values of the source data (what outputs write)."""
        return label_values(classes, self.class_values)

    def case_ids(self, split: str = "all", fold: int = 0) -> list[str]:
        """Case ids of ``split`` (train / val / test / all) in ``fold``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if split == "all":
            return self.manifest.case_ids
        return list(self.manifest.split(fold).side(split))

    def case_meta(self, case: str) -> CaseMeta:
        """The manifest's record of ``case``; a ``KeyError`` naming the manifest when it has none."""
        return self.manifest.case(case)

    def patient(self, case: str) -> str:
        """The patient group of ``case`` (the case id where the cache has no grouping)."""
        return self.manifest.patient(case)

    def load_case(self, case: str) -> CachedCase:
        meta = self.case_meta(case)
        path = self.root / meta.file
        try:
            with np.load(path, allow_pickle=False) as data:
                stored = (
                    CaseMeta.from_json(json.loads(str(data["meta"])), source=path) if "meta" in data.files else None
                )
                image, label = data["image"], data["label"]
                affine, source_affine = data["affine"], data["source_affine"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
            raise DataError(
                f"{path}: cached case is unreadable ({error}); delete this file and rerun `imaseg preprocess` with "
                "the same settings, which rewrites the cases that are missing",
                [path],
            ) from error
        if stored is None or stored.fingerprint != meta.fingerprint:
            raise DataError(
                f"{path}: cached case does not match {self.root / MANIFEST_NAME} (written by another preprocess "
                "run, e.g. one that was interrupted); rerun `imaseg preprocess` with the settings you want",
                [path],
            )
        return CachedCase(case, image, self.to_classes(label, path), affine, source_affine, meta)

    def samples(self, split: str = "train", fold: int = 0) -> SampleSet:
        """All samples of ``split`` in memory, in manifest order (2D slices or whole images/volumes)."""
        images: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        ids: list[str] = []
        cases: list[str] = []
        for case in self.case_ids(split, fold):
            cached = self.load_case(case)
            meta = cached.meta
            if meta.slice_axis is None:
                images.append(cached.image[None])
                labels.append(cached.label[None, None])
            else:
                index = np.asarray(meta.slice_indices, dtype=np.int64)
                images.append(to_slices(cached.image, meta.slice_axis)[index])
                labels.append(to_slices(cached.label[None], meta.slice_axis)[index])
            ids += meta.sample_ids
            cases += [case] * len(meta.sample_ids)
        if not ids:
            raise DataError(f"{self.root}: split {split!r} of fold {fold} holds no samples")
        return SampleSet(
            torch.from_numpy(np.ascontiguousarray(np.concatenate(images))),
            torch.from_numpy(np.ascontiguousarray(np.concatenate(labels))),
            ids,
            cases,
        )
