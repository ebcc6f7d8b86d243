"""Shared fixtures: tiny synthetic NIfTI folders in tmp_path, the real-data location, torch threads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, SHARED_DATA, make_pair, real_data, write_nifti  # noqa: F401  (re-exported)

torch.set_num_threads(2)


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
