"""Builders of hostile data sets for the corpus: tiny folders in each layout, and the edits that break them."""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import nibabel as nib
import numpy as np
from helpers import make_pair, write_nifti
from hostile_corpus import Case, Probe, Workspace

SHAPE = (8, 8, 3)
A_IMAGE, A_LABEL = "imagesTr/a.nii.gz", "labelsTr/a.nii.gz"


def plain(root: Path, cases=("a", "b"), shape=SHAPE) -> Path:
    rng = np.random.default_rng(0)
    for case in cases:
        image, label = make_pair(rng, shape=shape)
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    return root


def msd(root: Path, **meta) -> Path:
    plain(root)
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ("a", "b")]
    content = {"labels": {"0": "bg", "1": "x", "2": "y"}, "training": training, "tensorImageSize": "3D", **meta}
    (root / "dataset.json").write_text(json.dumps(content))
    return root


def nnunet(root: Path) -> Path:
    plain(root)
    for path in (root / "imagesTr").iterdir():
        path.rename(path.with_name(path.name.replace(".nii.gz", "_0000.nii.gz")))
    meta = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "x": 1, "y": 2}, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def header(edit: Callable[[bytearray], None], name: str = A_IMAGE) -> Callable[[Path, Path], None]:
    def mutate(root: Path, _folder: Path) -> None:
        path = root / name
        raw = bytearray(gzip.decompress(path.read_bytes()))
        edit(raw)
        path.write_bytes(gzip.compress(bytes(raw)))

    return mutate


def dims(*shape: int) -> Callable[[bytearray], None]:
    return lambda raw: struct.pack_into("<8h", raw, 40, len(shape), *shape, *([1] * (7 - len(shape))))


def sform(row_x) -> Callable[[bytearray], None]:
    def edit(raw: bytearray) -> None:
        struct.pack_into("<hh", raw, 252, 0, 1)
        struct.pack_into("<4f", raw, 280, *row_x)
        struct.pack_into("<8f", raw, 296, *([0.0] * 8))

    return edit


def zero_pixdim_z(with_sform: bool) -> Callable[[bytearray], None]:
    def edit(raw: bytearray) -> None:
        struct.pack_into("<hh", raw, 252, 1, 1 if with_sform else 0)
        struct.pack_into("<f", raw, 88, 0.0)

    return edit


def image(array, name: str = A_IMAGE, affine=None, dtype=None) -> Callable[[Path, Path], None]:
    def mutate(root: Path, _folder: Path) -> None:
        target = root / name
        if dtype is not None:
            nib.save(nib.Nifti1Image(np.asarray(array), np.eye(4), dtype=dtype), str(target))
        else:
            write_nifti(target, np.asarray(array), affine=affine)

    return mutate


def raw_bytes(data: bytes, name: str = A_IMAGE) -> Callable[[Path, Path], None]:
    return lambda root, _folder: (root / name).write_bytes(data)


def truncate(name: str = A_IMAGE) -> Callable[[Path, Path], None]:
    def mutate(root: Path, _folder: Path) -> None:
        (root / name).write_bytes((root / name).read_bytes()[:60])

    return mutate


def label_values(value: int) -> Callable[[Path, Path], None]:
    def mutate(root: Path, _folder: Path) -> None:
        label = np.asarray(nib.load(str(root / A_LABEL)).dataobj).astype(np.int64)
        label[label == 1] = value
        nib.save(nib.Nifti1Image(label, np.eye(4), dtype=np.int64), str(root / A_LABEL))

    return mutate


def link(target: Callable[[Path, Path], Path], name: str, pair: bool = True) -> Callable[[Path, Path], None]:
    def mutate(root: Path, folder: Path) -> None:
        os.symlink(target(root, folder), root / name)
        if pair:  # the link's partner, so the link is what is judged
            other = "labelsTr/c.nii.gz" if name.startswith("imagesTr") else "imagesTr/c.nii.gz"
            shutil.copy(root / ("labelsTr/a.nii.gz" if other.startswith("labels") else A_IMAGE), root / other)

    return mutate


def elsewhere(root: Path, folder: Path) -> Path:
    return plain(folder / "other_patient", cases=("secret",)) / "imagesTr" / "secret.nii.gz"


def edit_json(**changes) -> Callable[[Path, Path], None]:
    def mutate(root: Path, folder: Path) -> None:
        meta = json.loads((root / "dataset.json").read_text())
        for key, value in changes.items():
            if callable(value):
                value(meta, root, folder)
            else:
                meta[key] = value
        (root / "dataset.json").write_text(json.dumps(meta))

    return mutate


def first_entry(key: str, value) -> Callable[[dict, Path, Path], None]:
    def edit(meta: dict, root: Path, folder: Path) -> None:
        meta["training"][0][key] = value(root, folder) if callable(value) else value

    return edit


def denied(predicate: Callable[[Path], bool]) -> Callable[[], contextlib.AbstractContextManager]:
    """Simulate a permission error (tests may run as root, who reads everything)."""
    real = Path.is_file

    def is_file(self: Path) -> bool:
        if predicate(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    return lambda: mock.patch.object(Path, "is_file", is_file)


def unreadable(path: Path) -> Callable[[], contextlib.AbstractContextManager]:
    """Reading ``path`` fails as it would for a user without read permission."""
    real = nib.load

    def load(name, *args, **kwargs):
        if Path(name) == path:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(name, *args, **kwargs)

    return lambda: mock.patch("imaseg.data.nifti.nib.load", load)


def checked(
    name: str,
    what: str,
    expect: str,
    *mutations: Callable[[Path, Path], object],
    layout: Callable[[Path], Path] = plain,
    flags: tuple[str, ...] = (),
    code: int = 1,
    group: str = "files",
    command: str = "check",
    patch: Callable[[Path], Callable[[], contextlib.AbstractContextManager]] | None = None,
) -> Case:
    """A case whose data folder is built by ``layout`` and altered by ``mutations``, judged by ``command``."""

    def build(_workspace: Workspace, folder: Path) -> Probe:
        root = layout(folder / "data")
        for mutation in mutations:
            mutation(root, folder)
        argv = [command, str(root), *flags]
        if command == "preprocess":
            argv = [command, "--data", str(root), "--out", str(folder / "cache"), "--spatial-size", "8,8"]
            argv += ["--folds", "2", "--val-groups", "0", *flags]
        return Probe(argv, expect, code, watch=[root], patch=patch(root) if patch else None)

    return Case(name, group, what, build)
