"""Find the images to segment: an image file, a folder of them, or a data set folder, no labels needed.

Images are NIfTI, NRRD or MetaImage files, or DICOM series (a folder of ``.dcm`` files). Accepted, checked
in this order:

- one image file, or one DICOM series folder;
- a folder with ``imagesTs/`` (the unlabelled test images of MSD and nnU-Net layouts), else
  ``imagesTr/``, else ``images/``;
- a folder holding image files or DICOM series folders directly (each series folder is a case).

nnU-Net channel files (``CASE_0000``, ``CASE_0001``...) are grouped into one multi-channel case when
every file of the folder carries such a suffix. Every entry is ``{"image": path or [paths], "case": id}``.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for name in ("a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz"):
...     _ = (root / name).write_bytes(b"")
>>> [(e["case"], len(e["image"])) for e in find_images(root)]
[('a', 2), ('b', 2)]
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from imaseg.data.errors import DataError
from imaseg.data.images import is_image, strip_image_suffix
from imaseg.data.itk import is_dicom_series

__all__ = ["IMAGE_FOLDERS", "find_images"]

IMAGE_FOLDERS = ("imagesTs", "imagesTr", "images")
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def find_images(path: str | os.PathLike[str]) -> list[dict]:
    """The cases to segment under ``path`` (see the module docstring).

    Raises:
        DataError: the path does not exist, is not NIfTI, or holds no NIfTI file (naming it and the fix).
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: no such file or folder; give a NIfTI file or a folder of them", [root])
    if root.is_file():
        if not is_image(root):
            raise DataError(
                f"{root}: not an image file imaseg reads (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd); convert it first",
                [root],
            )
        return [{"image": str(root), "case": strip_image_suffix(root.name)}]
    if is_dicom_series(root):
        return [{"image": str(root), "case": root.name}]
    folder = next((root / name for name in IMAGE_FOLDERS if (root / name).is_dir()), root)
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    series = [p for p in entries if is_dicom_series(p)]
    files = [p for p in entries if p.is_file() and is_image(p)]
    if not files and not series:
        raise DataError(
            f"{folder}: no images (NIfTI, NRRD, MetaImage files or DICOM series folders); put the images there, "
            "or in imagesTs/ below it",
            [folder],
        )
    if series:
        return [{"image": str(p), "case": p.name} for p in series] + [
            {"image": str(p), "case": strip_image_suffix(p.name)} for p in files
        ]
    names = [strip_image_suffix(p.name) for p in files]
    channels = [(m["case"], str(f)) for m, f in zip(map(_CHANNEL.match, names), files) if m is not None]
    if len(channels) == len(files):
        grouped: dict[str, list[str]] = {}
        for case, file in channels:
            grouped.setdefault(case, []).append(file)
        counts = {len(v) for v in grouped.values()}
        if len(counts) != 1:
            raise DataError(
                f"{folder}: cases have different numbers of channel files "
                f"({ {c: len(v) for c, v in grouped.items()} }); every case needs the same channels",
                [folder],
            )
        return [{"image": v if len(v) > 1 else v[0], "case": c} for c, v in grouped.items()]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{folder}: the same case as .nii and .nii.gz: {duplicated}; keep one", [folder])
    return [{"image": str(p), "case": n} for p, n in zip(files, names)]
