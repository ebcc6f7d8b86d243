"""Shared fixtures: tiny synthetic NIfTI folders in tmp_path, the real-data location, torch threads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, SHARED_DATA, make_pair, real_data, tiny_train_config, write_nifti  # noqa: F401  (re-exported)

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


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """The synthetic demo heart set, tiny: 5 patients x 2 phases of 32 x 32 x 4 (MSD layout)."""
    from imaseg.data.demo import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("tiny") / "data", patients=5, shape=(32, 32, 4), seed=0)


@pytest.fixture(scope="session")
def tiny_cache(tiny_data: Path) -> Path:
    """``tiny_data`` preprocessed to 32 x 32 slices; fold 0 = 3 train, 1 val, 1 test patient(s)."""
    from imaseg.cache.writer import preprocess_dataset
    from imaseg.transforms.chain import PreprocessConfig

    cache = tiny_data.parent / "cache"
    config = PreprocessConfig(
        intensity="none", spatial_size=[32, 32], folds=5, val_groups=1, group_regex=r"^(patient\d+)"
    )
    preprocess_dataset(tiny_data, cache, config, progress=False)
    return cache


@pytest.fixture(scope="session")
def tiny_run(tiny_cache: Path) -> Path:
    """A standard model trained for a few epochs on ``tiny_cache`` (read-only: copy before changing it)."""
    from imaseg.training.trainer import train

    run = tiny_cache.parent / "run_std"
    train(tiny_cache, run, tiny_train_config(epochs=8), progress=False)
    return run


@pytest.fixture(autouse=True)
def _restore_logging():
    """``imaseg.cli.main`` points the root logger at the (captured, later closed) stderr; undo that after each test."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
