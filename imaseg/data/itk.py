"""NRRD, MetaImage and DICOM series through SimpleITK, as the same :class:`~imaseg.data.nifti.NiftiVolume`.

NIfTI stays the native format (nibabel, :mod:`imaseg.data.nifti`); these formats are read beside it, so
``imaseg check``, ``preprocess`` and ``predict`` take them with no conversion step:

- ``.nrrd`` / ``.nhdr`` (NRRD) and ``.mha`` / ``.mhd`` (MetaImage) files;
- a DICOM series: a folder of ``.dcm`` files (one series; the slices are sorted by position).

ITK's physical space is LPS and its arrays are ``(z, y, x)``; the volume returned is indexed ``(x, y, z)``
with an affine in RAS mm, exactly as nibabel gives a NIfTI of the same image, so every later step (and
the label maps written back as NIfTI) sees the same geometry. SimpleITK is optional:
``pip install imaseg[itk]``.
"""

from __future__ import annotations

import locale
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from imaseg.data.errors import DataError
from imaseg.data.nifti import NiftiVolume
from imaseg.utils.memory import format_bytes, memory_budget

__all__ = ["ITK_SUFFIXES", "is_dicom_series", "is_itk_image", "read_itk"]

ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def is_itk_image(path: str | os.PathLike[str]) -> bool:
    """True for a file name ending in an NRRD or MetaImage suffix."""
    return str(path).lower().endswith(ITK_SUFFIXES)


def is_dicom_series(path: str | os.PathLike[str]) -> bool:
    """True for a folder holding ``.dcm`` files."""
    folder = Path(path)
    return folder.is_dir() and any(p.suffix.lower() == ".dcm" for p in folder.iterdir())


def _sitk():
    try:
        import SimpleITK
    except ImportError:
        raise DataError(
            "reading NRRD, MetaImage or DICOM needs SimpleITK: pip install 'imaseg[itk]' (or convert to NIfTI)"
        ) from None
    return SimpleITK


def _read(path: Path):
    """Read through SimpleITK; GDCM switches the process locale to "C" for DICOM and does not switch it back,
    which would change how the rest of the process decodes text, so the locale is restored afterwards."""
    sitk = _sitk()
    saved = locale.setlocale(locale.LC_ALL, None)
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            series = reader.GetGDCMSeriesIDs(str(path))
            if len(series) != 1:
                raise DataError(
                    f"{path}: holds {len(series)} DICOM series; put each series in a folder of its own", [path]
                )
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
            return reader.Execute()
        _check_budget(sitk, path)
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise DataError(
            f"{path}: SimpleITK cannot read it ({reason}); re-export it or convert to NIfTI", [path]
        ) from None
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _check_budget(sitk, path: Path) -> None:
    """Refuse a file whose header claims more voxels than the memory budget allows, before reading them (the
    image is held twice while it becomes an array: ITK's buffer and NumPy's)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    probe = sitk.Image([1] * reader.GetDimension(), reader.GetPixelID())
    itemsize = sitk.GetArrayViewFromImage(probe).dtype.itemsize * max(1, reader.GetNumberOfComponents())
    voxels = int(np.prod(reader.GetSize(), dtype=np.float64))
    needed = 2 * voxels * itemsize
    budget, source = memory_budget()
    if budget is not None and needed > budget:
        raise DataError(
            f"{path}: reading it needs {format_bytes(needed)} ({tuple(reader.GetSize())} voxels, held twice while "
            f"converted), more than {source}: {format_bytes(budget)}; free memory, crop or downsample the volume, or "
            "set --memory-budget GIB",
            [path],
        )


def read_itk(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read an NRRD / MetaImage file or a DICOM series folder as a volume indexed ``(x, y[, z])`` in RAS mm.

    Raises:
        DataError: missing, unreadable, larger than the memory budget, several DICOM series in one folder, vector
            pixels, or no SimpleITK.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder", [path])
    image = _read(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(
            f"{path}: {image.GetNumberOfComponentsPerPixel()} components per pixel (colour or vector); give grey "
            "values, one channel per file",
            [path],
        )
    sitk = _sitk()
    ndim = image.GetDimension()
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(tuple(range(ndim))[::-1]))
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(ndim, ndim)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    lps = np.eye(4)
    lps[:ndim, :ndim] = direction * spacing[None, :]
    lps[:ndim, 3] = image.GetOrigin()
    affine = _LPS_TO_RAS @ lps
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{path}: degenerate geometry (zero spacing or direction)", [path])
    orientation = "".join(nib.aff2axcodes(affine))[: min(ndim, 3)]
    return NiftiVolume(str(path), array, affine, tuple(float(s) for s in spacing[:3]), orientation)
