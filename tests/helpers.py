"""Helpers shared by the test modules: tiny NIfTI files and the real-data location.

They live here rather than only in ``conftest.py`` because every ``conftest.py`` is imported as the module
``conftest`` (tests/attacks/ has its own), so ``from conftest import ...`` would find whichever was loaded
last. ``conftest.py`` re-exports them; test modules import them from ``helpers``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


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


TINY_CHANNELS = [4, 8, 16]


def tiny_train_config(**overrides):
    """A TrainConfig that trains a very small UNet in seconds (no TensorBoard, no progress)."""
    from imaseg.config import config_from_dict
    from imaseg.training.config import TrainConfig

    settings = {
        "channels": TINY_CHANNELS,
        "res_units": 0,
        "epochs": 2,
        "batch_size": 8,
        "lr": 3e-3,
        "val_steps": 2,
        "tensorboard": False,
        "attack_steps": 2,
        "ima_steps": 2,
        "ima_bisection_steps": 3,
        "clip_range": [0.0, 1.0],
        "deterministic": True,
    }
    settings.update(overrides)
    return config_from_dict(TrainConfig, settings)
