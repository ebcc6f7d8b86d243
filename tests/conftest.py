"""Shared fixtures: tiny synthetic NIfTI folders in tmp_path, the real-data location, torch threads."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(2)


def real_data(name: str) -> Path:
    """Path of a real data set under ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real data {path} is absent (it ships beside the repository in development and CI only)")
    return path


def write_nifti(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), affine=None) -> Path:
    """Write a NIfTI file with a diagonal affine of ``spacing`` unless ``affine`` is given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if affine is None:
        affine = np.diag([*spacing[: min(array.ndim, 3)], *([1.0] * (4 - min(array.ndim, 3)))])
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def make_pair(rng: np.random.Generator, shape=(24, 20, 6), classes=3) -> tuple[np.ndarray, np.ndarray]:
    """A random image and a label holding every class 0..classes-1."""
    image = rng.normal(size=shape).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    for c in range(1, classes):
        label[(c - 1) * 2 : (c - 1) * 2 + 3, 2:8, ...] = c
    return image, label


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def msd_folder(tmp_path: Path, rng: np.random.Generator) -> Path:
    """An MSD folder: dataset.json + imagesTr/ + labelsTr/, 4 cases of 2 patients, 3 classes."""
    root = tmp_path / "Task01_Toy"
    training = []
    for case in ("p01_frame01", "p01_frame09", "p02_frame01", "p02_frame11"):
        image, label = make_pair(rng)
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", image, (1.5, 1.5, 5.0))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label, (1.5, 1.5, 5.0))
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    meta = {
        "name": "toy",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "a", "2": "b"},
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root
