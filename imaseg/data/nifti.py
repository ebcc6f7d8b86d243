"""Reading and writing NIfTI with the true voxel spacing.

Some files carry a unit-scale sform while the real spacing sits in the qform / pixdim (the ACDC
re-exports in ``../shared/data/acdc_real_headers`` are such files: nibabel's ``img.affine`` says 1 mm,
``header.get_zooms()`` and SimpleITK say 1.5625 x 1.5625 x 10 mm). :func:`true_affine` keeps the
direction cosines and origin of the affine nibabel picks but rescales its columns to pixdim, which is
what ITK does for such files; every reader in imaseg goes through it.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.volumeutils import apply_read_scaling

from imaseg.data.errors import DataError
from imaseg.utils.atomic import atomic_path
from imaseg.utils.memory import format_bytes, memory_budget

__all__ = [
    "NIFTI_SUFFIXES",
    "NiftiVolume",
    "check_exists",
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


# deflate cannot compress better than about 1032:1; a header claiming more data than that is lying
MAX_DEFLATE_RATIO = 1032
MAX_ARRAY_BYTES = 16 * 1024**3  # refuse to read a single volume above 16 GiB


def check_exists(path: Path) -> None:
    """A :class:`DataError` for a missing file, a broken symbolic link or a link loop, naming the path."""
    try:
        path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise DataError(
                f"{path}: broken symbolic link (it points to {os.readlink(path)}, which does not exist)", [path]
            ) from None
        raise DataError(f"{path}: file does not exist", [path]) from None
    except OSError as error:  # ELOOP and friends
        raise DataError(f"{path}: cannot open ({error.strerror or error}); a symbolic link loop?", [path]) from None
    if not path.is_file():
        raise DataError(f"{path}: not a file", [path])


def _check_claimed_size(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse a header that claims far more voxels than the file can hold, or more than the memory budget
    allows, before reading them."""
    header = image.header
    if any(int(n) <= 0 for n in image.shape):
        raise DataError(
            f"{path}: the header claims {image.shape} voxels: no voxels along an axis (a dimension <= 0); the file "
            "is empty or its header broken: re-export it",
            [path],
        )
    claimed = int(np.prod(image.shape, dtype=np.float64)) * header.get_data_dtype().itemsize
    size = path.stat().st_size
    offset = int(header.get("vox_offset", 0) or 0)
    compressed = str(path).endswith(".gz")
    budget, source = memory_budget()
    if claimed > MAX_ARRAY_BYTES and not source.startswith("the memory budget set"):
        raise DataError(
            f"{path}: the header claims {image.shape} voxels ({claimed / 1024**3:.1f} GiB), more than imaseg reads "
            f"({MAX_ARRAY_BYTES / 1024**3:.0f} GiB); the header is broken or the volume needs cropping first",
            [path],
        )
    if (compressed and claimed > size * MAX_DEFLATE_RATIO) or (not compressed and size < offset + claimed):
        raise DataError(
            f"{path}: the file is truncated or corrupt: its header claims {image.shape} voxels "
            f"({format_bytes(claimed)}) but the file holds {format_bytes(size)}{' compressed' if compressed else ''}; "
            "re-export or re-download it",
            [path],
        )
    needed = _decoded_bytes(image)
    if budget is not None and needed > budget:
        raise DataError(
            f"{path}: decoding it needs {format_bytes(needed)} ({image.shape} voxels of {header.get_data_dtype()}"
            f"{', scaled to float64' if needed > claimed else ''}), more than {source}: {format_bytes(budget)}; "
            "the file is intact. Free memory, crop or downsample the volume, or set --memory-budget GIB",
            [path],
        )


def _decoded_bytes(image: nib.Nifti1Image) -> int:
    """What decoding takes: the stored voxels, plus a float64 copy when the header scales them."""
    voxels = int(np.prod(image.shape, dtype=np.float64))
    stored = voxels * image.header.get_data_dtype().itemsize
    proxy = image.dataobj
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    scaled = (slope, inter) not in ((1, 0), (None, None))
    return stored + (voxels * 8 if scaled else 0)


def _check_geometry(path: Path, affine: np.ndarray, ndim: int) -> None:
    if not np.all(np.isfinite(affine)):
        raise DataError(f"{path}: the header's affine holds NaN/Inf; fix its sform/qform (e.g. re-export it)", [path])
    if np.linalg.matrix_rank(affine[:3, :ndim], tol=1e-9) < ndim:
        raise DataError(
            f"{path}: the header's affine is degenerate (all zero or flat: {affine[:3, :3].tolist()}); fix its "
            "sform/qform or pixdim (e.g. re-export it) so each voxel axis has a direction and a spacing",
            [path],
        )


def _raw_pixdim(path: Path, ndim: int) -> list[float] | None:
    """The spatial pixdim as stored (nibabel replaces zeros by 1 on load); ``None`` if unreadable."""
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rb") as handle:
            head = handle.read(348)
        if len(head) < 348 or struct.unpack("<i", head[:4])[0] not in (348, 540):
            return None
        return [float(v) for v in struct.unpack("<8f", head[76:108])[1 : ndim + 1]]
    except (OSError, EOFError, zlib.error, struct.error):
        return None


def _load(path: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    image = None
    try:
        image = cast("nib.Nifti1Image", nib.load(str(path)))  # .nii / .nii.gz: Nifti1Image or its subclass Nifti2Image
        _check_claimed_size(path, image)
        array = _decode(path, image)
    except DataError:
        raise
    except PermissionError:
        raise DataError(
            f"{path}: cannot read the file: permission denied; give your user read access (chmod u+r) or copy it "
            "somewhere readable",
            [path],
        ) from None
    except MemoryError:
        raise DataError(
            f"{path}: not enough memory to decode it"
            f"{f' ({format_bytes(_decoded_bytes(image))})' if image is not None else ''}; the file is intact: free "
            "memory, or crop or downsample the volume",
            [path],
        ) from None
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as error:
        raise DataError(
            f"{path}: cannot read the file, it is truncated or corrupt ({type(error).__name__}: {error}); "
            "re-export or re-download it",
            [path],
        ) from error
    if array.dtype.fields is not None:
        raise DataError(
            f"{path}: a colour (RGB) NIfTI ({array.dtype}); convert it to grey values or one channel per file",
            [path],
        )
    return image, array


_CHUNK = 1024**2  # bytes decompressed at a time into the volume's own buffer


def _decode(path: Path, image: nib.Nifti1Image) -> np.ndarray:
    """The voxels as ``np.asarray(image.dataobj)`` gives them, but a ``.nii.gz`` is decompressed chunk by chunk
    into one buffer (nibabel's reader holds the whole volume twice while it decodes); ``.nii`` stays
    memory-mapped as nibabel maps it."""
    proxy = cast("ArrayProxy", image.dataobj)
    dtype = np.dtype(proxy.dtype)
    shape = tuple(int(n) for n in proxy.shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not str(path).endswith(".gz") or nbytes == 0 or not shape or dtype.fields is not None:
        return np.asarray(proxy)
    raw = np.empty(nbytes, dtype=np.uint8)
    with gzip.open(path, "rb") as handle:
        handle.seek(int(proxy.offset))
        filled = 0
        while filled < nbytes:
            chunk = handle.read(min(_CHUNK, nbytes - filled))
            if not chunk:
                raise OSError(f"expected {nbytes} bytes of voxel data, got {filled}")
            raw[filled : filled + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            filled += len(chunk)
    unscaled = raw.view(dtype).reshape(shape, order=proxy.order)
    # scaled as nibabel's ArrayProxy._get_scaled(dtype=None) scales it
    slope, inter = np.asanyarray(proxy.slope), np.asanyarray(proxy.inter)
    if np.can_cast(inter, slope.dtype):
        inter = inter.astype(slope.dtype)
    return np.asarray(apply_read_scaling(unscaled, slope, inter))


def _refuse_unknown_spacing(path: Path, image: nib.Nifti1Image, raw: list[float], shape: tuple[int, ...]) -> None:
    """A zero pixdim is only made good by an sform; without one, nibabel's 1 mm would be a guess."""
    if int(image.header["sform_code"]) > 0:
        return
    unknown = [axis for axis, z in enumerate(raw) if z == 0 and shape[axis] > 1]
    if unknown:
        raise DataError(
            f"{path}: pixdim {raw} holds 0 for axis {', '.join(map(str, unknown))} and the file has no sform, so its "
            "voxel spacing is unknown (nibabel would assume 1 mm); set the true spacing (e.g. nibabel "
            "img.header.set_zooms(...)) or an sform, and re-save it",
            [path],
        )


def read_nifti(path: str | os.PathLike[str]) -> NiftiVolume:
    """Read a NIfTI file fully, with the true spacing.

    Raises:
        DataError: the file is not NIfTI, does not exist (or is a broken link), cannot be read (permissions),
            is truncated / corrupt, its header claims more data than the file holds or more than the memory
            budget (:func:`imaseg.utils.memory.memory_budget`), its affine is degenerate, its spacing unknown
            (pixdim 0 without an sform), or it is RGB.
    """
    path = Path(path)
    if not is_nifti(path):
        raise DataError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)", [path])
    check_exists(path)
    image, array = _load(path)
    ndim = min(array.ndim, 3)
    raw = _raw_pixdim(path, ndim)
    if raw is not None and any(z == 0 for z in raw):
        _refuse_unknown_spacing(path, image, raw, array.shape)
        affine = np.array(image.affine, dtype=np.float64)  # nibabel turned the 0 into 1 mm: trust the affine
        _check_geometry(path, affine, ndim)
        spacing_now = np.round(np.linalg.norm(affine[:3, :ndim], axis=0), 4).tolist()
        note = f"pixdim {raw} holds 0; spacing taken from the affine: {spacing_now} mm"
        logger.warning("%s: %s", path, note)
    else:
        affine, note = _true_affine(image, path)
        _check_geometry(path, affine, ndim)
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
