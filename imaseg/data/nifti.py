"""Reading and writing NIfTI with the true voxel spacing.

Some files carry a unit-scale sform while the real spacing sits in the qform / pixdim (the ACDC
re-exports in ``../shared/data/acdc_real_headers`` are such files: nibabel's ``img.affine`` says 1 mm,
``header.get_zooms()`` and SimpleITK say 1.5625 x 1.5625 x 10 mm). :func:`true_affine` keeps the
direction cosines and origin of the affine nibabel picks but rescales its columns to pixdim, which is
what ITK does for such files; every reader in imaseg goes through it.
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np

from imaseg.data.errors import DataError
from imaseg.utils.atomic import atomic_path

__all__ = [
    "NIFTI_SUFFIXES",
    "NiftiVolume",
    "is_nifti",
    "read_nifti",
    "strip_nifti_suffix",
    "true_affine",
    "write_nifti",
]

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def is_nifti(path: str | os.PathLike[str]) -> bool:
    """True when the file name ends in ``.nii`` or ``.nii.gz``."""
    return str(path).endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    """``"case_01.nii.gz" -> "case_01"``."""
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class NiftiVolume:
    """A NIfTI image as read: the voxel array (native dtype) and its true geometry."""

    path: str
    array: np.ndarray
    affine: np.ndarray  # 4 x 4, true spacing
    spacing: tuple[float, ...]  # one per spatial axis
    orientation: str  # axis codes, e.g. "RAS"
    spacing_note: str = ""  # set when the spacing was taken from pixdim over a disagreeing affine

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def true_affine(image: nib.Nifti1Image, path: str | os.PathLike[str] = "") -> np.ndarray:
    """Return ``image.affine`` with its column lengths set to the header's pixdim spacing.

    Only spatial columns are touched; the orientation and origin are kept.
    """
    return _true_affine(image, path)[0]


def _true_affine(image: nib.Nifti1Image, path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    affine = np.array(image.affine, dtype=np.float64)
    ndim = min(len(image.shape), 3)
    zooms = np.array(image.header.get_zooms()[:ndim], dtype=np.float64)
    norms = np.linalg.norm(affine[:3, :ndim], axis=0)
    note = ""
    if np.all(zooms > 0) and not np.allclose(norms, zooms, rtol=1e-3, atol=1e-5):
        note = (
            f"affine spacing {np.round(norms, 4).tolist()} disagrees with pixdim {np.round(zooms, 4).tolist()}; "
            "using pixdim (as ITK does)"
        )
        logger.debug("%s: %s", path, note)
        affine[:3, :ndim] = affine[:3, :ndim] / np.where(norms > 0, norms, 1.0) * zooms
    return affine, note


def read_nifti(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read a NIfTI file fully, with the true spacing.

    Raises:
        DataError: the file is not NIfTI, does not exist, or is truncated / corrupt.
    """
    path = Path(path)
    if not is_nifti(path):
        raise DataError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)", [path])
    if not path.is_file():
        raise DataError(f"{path}: file does not exist", [path])
    try:
        image = cast("nib.Nifti1Image", nib.load(str(path)))  # .nii / .nii.gz: Nifti1Image or its subclass Nifti2Image
        array = np.asarray(image.dataobj)
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise DataError(
            f"{path}: cannot read the file, it is truncated or corrupt ({type(error).__name__}: {error}); "
            "re-export or re-download it",
            [path],
        ) from error
    affine, note = _true_affine(image, path)
    ndim = min(array.ndim, 3)
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :ndim], axis=0))
    orientation = "".join(nib.aff2axcodes(affine))[:ndim]
    return NiftiVolume(str(path), array, affine, spacing, orientation, note)


def write_nifti(path: str | os.PathLike[str], array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array`` with ``affine`` (sform and qform both set) atomically; returns the path."""
    image = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    image.set_sform(image.affine, code=1)
    image.set_qform(image.affine, code=1)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    with atomic_path(path) as tmp:
        target = tmp.with_name(tmp.name + suffix)  # nibabel picks the compression from the suffix
        try:
            nib.save(image, str(target))
            os.replace(target, tmp)
        finally:
            target.unlink(missing_ok=True)
    return Path(path)
