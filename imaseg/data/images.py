"""One entry point for every image format imaseg reads: NIfTI (nibabel) and, through SimpleITK, NRRD,
MetaImage and DICOM series; each comes back as a :class:`~imaseg.data.nifti.NiftiVolume`.

>>> is_image("scan.nrrd"), is_image("scan.nii.gz"), is_image("notes.txt")
(True, True, False)
>>> strip_image_suffix("case_01.mha"), strip_image_suffix("case_01.nii.gz")
('case_01', 'case_01')
"""

from __future__ import annotations

import os
from pathlib import Path

from imaseg.data.itk import ITK_SUFFIXES, is_dicom_series, is_itk_image, read_itk
from imaseg.data.nifti import NIFTI_SUFFIXES, NiftiVolume, is_nifti, read_nifti

__all__ = ["IMAGE_SUFFIXES", "is_image", "read_image", "strip_image_suffix"]

IMAGE_SUFFIXES = (*NIFTI_SUFFIXES, *ITK_SUFFIXES)


def is_image(path: str | os.PathLike[str]) -> bool:
    """True for a file name ending in a NIfTI, NRRD or MetaImage suffix."""
    return is_nifti(path) or is_itk_image(path)


def strip_image_suffix(name: str) -> str:
    """The case name of an image file (``"case_01.nii.gz" -> "case_01"``)."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read a NIfTI, NRRD or MetaImage file, or a DICOM series folder, with its true geometry.

    Raises:
        DataError: from the format's reader, naming the file and the fix.
    """
    if is_itk_image(path) or is_dicom_series(Path(path)):
        return read_itk(path)
    return read_nifti(path)
