"""One case of the cache: :class:`CaseMeta`, its entry in ``manifest.json`` and in ``cases/CASE.npz``.

The writer stores the same record twice: in the case file (without ``group`` and ``fold``, which the
split decides later) and in the manifest's ``cases`` list (with them). This module alone spells its keys.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from imaseg.data.errors import DataError

__all__ = ["REPROCESS", "CaseMeta", "missing_keys", "sample_id"]

# keys every case has carried since the first cache version; the rest have defaults for older caches
_REQUIRED = (
    "case",
    "image",
    "label",
    "file",
    "fingerprint",
    "source_shape",
    "shape",
    "source_dims",
    "slice_axis",
    "slice_indices",
    "sample_ids",
    "max_label",
)


REPROCESS = "re-run `imaseg preprocess --data DIR --out CACHE` to rewrite the cache"


def sample_id(case: str, index: int | None) -> str:
    """Stable id of a training sample: ``"case:007"`` for slice 7 of a volume, ``"case"`` otherwise.

    >>> sample_id("patient001_frame01", 7), sample_id("lung_001", None)
    ('patient001_frame01:007', 'lung_001')
    """
    return case if index is None else f"{case}:{index:03d}"


def missing_keys(
    data: object, required: Sequence[str], source: str | os.PathLike[str], what: str, fix: str = REPROCESS
) -> None:
    """Refuse a stored record that is not a JSON object or lacks ``required`` keys, naming the file and ``fix``.

    Raises:
        DataError: naming ``source``, the missing keys and the fix.
    """
    if not isinstance(data, Mapping):
        raise DataError(f"{source}: {what} must be a JSON object, got {type(data).__name__}; {fix}", [source])
    missing = [k for k in required if k not in data]
    if missing:
        raise DataError(
            f"{source}: {what} lacks the keys {missing} (written by another imaseg, or damaged); {fix}", [source]
        )


@dataclass(frozen=True)
class CaseMeta:
    """What the cache knows of one case without reading its arrays.

    Attributes:
        case: the case id.
        image: the source image file (a tuple of files for several channels); ``label``: its label file.
        file: the case file, relative to the cache folder (``cases/CASE.npz``).
        fingerprint: settings and source files the case file was made from (a mismatch means a stale file).
        source_shape, source_spacing: the source grid (spatial axes) and its spacing in mm.
        shape: the preprocessed image ``(C, *spatial)``.
        source_dims: spatial dimensions of the source image (2 or 3).
        slice_axis: the spatial axis a 2D model slices along; ``None`` for whole images or volumes.
        slice_indices, sample_ids: the kept slices (2D mode) and one id per training sample.
        max_label, label_values: the largest and every label value in the case.
        warnings: what preprocessing warned about (e.g. erased labels).
        intensity_scale, intensity_offset: the intensity map (``x * scale + offset``).
        group, fold: the patient group and its test fold (``None`` in the case file itself).
    """

    case: str
    image: str | tuple[str, ...] = ""
    label: str = ""
    file: str = ""
    fingerprint: str = ""
    source_shape: tuple[int, ...] = ()
    source_spacing: tuple[float, ...] = ()
    shape: tuple[int, ...] = ()
    source_dims: int = 3
    slice_axis: int | None = None
    slice_indices: tuple[int, ...] = ()
    sample_ids: tuple[str, ...] = ()
    max_label: int = 0
    label_values: tuple[int, ...] = ()
    warnings: tuple[str, ...] = ()
    intensity_scale: float = 1.0
    intensity_offset: float = 0.0
    group: str | None = None
    fold: int | None = None

    @property
    def patient(self) -> str:
        """The patient group, falling back to the case id (caches split without grouping).

        >>> CaseMeta("p1_a", group="p1").patient, CaseMeta("p1_a").patient
        ('p1', 'p1_a')
        """
        return self.group if self.group is not None else self.case

    @property
    def image_files(self) -> list[str]:
        """The source image file of each channel."""
        return [self.image] if isinstance(self.image, str) else list(self.image)

    @property
    def intensity_divisor(self) -> float:
        """``intensity_scale`` as a divisor that maps model units back to source units (never 0)."""
        return float(self.intensity_scale) or 1.0

    def in_split(self, group: str, fold: int) -> CaseMeta:
        """This case with its patient group and test fold (as the manifest stores it)."""
        return replace(self, group=group, fold=fold)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str | os.PathLike[str] = "manifest.json") -> CaseMeta:
        """Parse a stored case record; older caches without ``label_values`` / ``warnings`` get their defaults.

        Raises:
            DataError: a required key is missing (naming ``source`` and the fix).
        """
        what = f"the record of case {data.get('case', '?')!r}" if isinstance(data, Mapping) else "a case record"
        missing_keys(data, _REQUIRED, source, what)
        image = data["image"]
        max_label = int(data["max_label"])
        return cls(
            case=str(data["case"]),
            image=str(image) if isinstance(image, str) else tuple(str(p) for p in image),
            label=str(data["label"]),
            file=str(data["file"]),
            fingerprint=str(data["fingerprint"]),
            source_shape=tuple(int(n) for n in data["source_shape"]),
            source_spacing=tuple(float(v) for v in data.get("source_spacing", ())),
            shape=tuple(int(n) for n in data["shape"]),
            source_dims=int(data["source_dims"]),
            slice_axis=None if data["slice_axis"] is None else int(data["slice_axis"]),
            slice_indices=tuple(int(i) for i in data["slice_indices"]),
            sample_ids=tuple(str(s) for s in data["sample_ids"]),
            max_label=max_label,
            label_values=tuple(int(v) for v in data.get("label_values", range(max_label + 1))),
            warnings=tuple(str(w) for w in data.get("warnings", ())),
            intensity_scale=float(data.get("intensity_scale", 1.0)),
            intensity_offset=float(data.get("intensity_offset", 0.0)),
            group=None if data.get("group") is None else str(data["group"]),
            fold=None if data.get("fold") is None else int(data["fold"]),
        )

    def to_json(self) -> dict[str, Any]:
        """The stored record, keys in the writer's order; ``group`` / ``fold`` only once assigned."""
        record: dict[str, Any] = {
            "case": self.case,
            "image": self.image if isinstance(self.image, str) else list(self.image),
            "label": self.label,
            "file": self.file,
            "fingerprint": self.fingerprint,
            "source_shape": list(self.source_shape),
            "source_spacing": list(self.source_spacing),
            "shape": list(self.shape),
            "source_dims": self.source_dims,
            "slice_axis": self.slice_axis,
            "slice_indices": list(self.slice_indices),
            "sample_ids": list(self.sample_ids),
            "max_label": self.max_label,
            "label_values": list(self.label_values),
            "warnings": list(self.warnings),
            "intensity_scale": self.intensity_scale,
            "intensity_offset": self.intensity_offset,
        }
        if self.group is not None:
            record["group"] = self.group
        if self.fold is not None:
            record["fold"] = self.fold
        return record
