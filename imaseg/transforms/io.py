"""Loading NIfTI into MONAI ``MetaTensor`` s with the true spacing (array + dictionary transforms).

MONAI's ``LoadImaged`` with the nibabel reader takes ``img.affine``, which is wrong for files with a
unit-scale sform and the real spacing in pixdim; these transforms read through
:func:`imaseg.data.images.read_image` instead (NIfTI, NRRD, MetaImage, DICOM series), so every spatial transform downstream sees true mm.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from imaseg.data.errors import DataError
from imaseg.data.images import read_image

__all__ = ["LoadNifti", "LoadNiftid"]


class LoadNifti(Transform):
    """Path (or list of per-channel paths) -> channel-first ``MetaTensor`` with the true affine.

    Args:
        dtype: output dtype (``torch.float32`` for images, ``torch.int64`` for label maps).
    """

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        self.dtype = dtype

    def __call__(self, paths: str | os.PathLike[str] | Sequence[str]) -> MetaTensor:
        files: list[str | os.PathLike[str]] = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        volumes = [read_image(p) for p in files]
        first = volumes[0]
        arrays = []
        for volume in volumes:
            array = volume.array
            while array.ndim > 3 and array.shape[-1] == 1:
                array = array[..., 0]
            if array.ndim > 3:
                raise DataError(
                    f"{volume.path}: image is {array.ndim}D {volume.shape} where 2D or 3D was expected; store one "
                    "channel per file (nnU-Net CASE_0000, CASE_0001...) or pick the time frame you want",
                    [volume.path],
                )
            if array.shape != first.array.shape[: array.ndim]:
                raise DataError(f"{volume.path}: shape {volume.shape} does not fit {first.path} {first.shape}")
            arrays.append(array)
        stacked = np.stack(arrays).astype(np.float32 if self.dtype.is_floating_point else np.int64)
        ndim = stacked.ndim - 1
        affine = first.affine.copy()
        if ndim == 2:  # keep a 3 x 3 affine for 2D images, as MONAI does
            affine = np.array(
                [[affine[0, 0], affine[0, 1], affine[0, 3]], [affine[1, 0], affine[1, 1], affine[1, 3]], [0, 0, 1]]
            )
        meta = {
            "filename_or_obj": first.path,
            "source_affine": first.affine,
            "source_shape": list(first.array.shape[:ndim]),
            "source_spacing": list(first.spacing),
            "source_orientation": first.orientation,
        }
        return MetaTensor(torch.from_numpy(stacked).to(self.dtype), affine=torch.as_tensor(affine), meta=meta)


class LoadNiftid(MapTransform):
    """Dictionary version of :class:`LoadNifti`; ``label_keys`` are loaded as int64 label maps."""

    def __init__(
        self,
        keys: KeysCollection,
        label_keys: Collection[Hashable] = ("label",),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_keys = set(label_keys if not isinstance(label_keys, str) else [label_keys])
        self.image_loader = LoadNifti(torch.float32)
        self.label_loader = LoadNifti(torch.int64)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            loader = self.label_loader if key in self.label_keys else self.image_loader
            d[key] = loader(d[key])
        return d
