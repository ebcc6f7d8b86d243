"""A tiny nnU-Net v2 data set, planned, preprocessed and trained for a few iterations from Python (no CLI, no
trainer lookup by name): bright discs on noise, 32 x 32 images stored as 32 x 32 x 1 NIfTI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

DATASET_ID = 998
DATASET = f"Dataset{DATASET_ID}_ImasegTiny"
TRAINER = "nnUNetTrainer_imasegTest"
LABELS = {"background": 0, "disc": 1}


def _case(rng: np.random.Generator, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.uniform(10, 22, 2)
    radius = rng.uniform(5, 9)
    label = ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius * radius).astype(np.uint8)
    image = 100 + 20 * rng.standard_normal((size, size)) + 80 * label
    return image.astype(np.float32)[..., None], label[..., None]


def write_tiny_dataset(raw: Path, n_train: int = 6, n_test: int = 2, seed: int = 0) -> Path:
    """``raw/DatasetXXX/`` in nnU-Net's raw layout: imagesTr/labelsTr (training), imagesTs/labelsTs (held out)."""
    root = raw / DATASET
    rng = np.random.default_rng(seed)
    for i in range(n_train + n_test):
        image, label = _case(rng)
        split = "Tr" if i < n_train else "Ts"
        for folder, array, name in (
            (f"images{split}", image, f"tiny_{i:03d}_0000"),
            (f"labels{split}", label, f"tiny_{i:03d}"),
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, np.eye(4)), root / folder / f"{name}.nii.gz")
    meta = {"channel_names": {"0": "MRI"}, "labels": LABELS, "numTraining": n_train, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def held_out_folder(dataset: Path, out: Path) -> Path:
    """The held-out cases as a labelled folder imaseg reads (nnU-Net layout: imagesTr + labelsTr + dataset.json)."""
    for source, target in (("imagesTs", "imagesTr"), ("labelsTs", "labelsTr")):
        (out / target).mkdir(parents=True, exist_ok=True)
        for file in sorted((dataset / source).iterdir()):
            (out / target / file.name).write_bytes(file.read_bytes())
    meta = json.loads((dataset / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**meta, "numTraining": len(list((out / "labelsTr").iterdir()))}))
    return out


def plan_and_preprocess() -> None:
    """nnU-Net's fingerprint, plans and 2D preprocessing of the data set (env vars set by the caller)."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=False, clean=True, verbose=False)
    plans = plan_experiments([DATASET_ID])
    preprocess([DATASET_ID], plans, configurations=("2d",), num_processes=(1,), verbose=False)


def train(preprocessed: Path, fold: int = 0) -> Path:
    """Train fold ``fold`` for 2 epochs of 3 iterations; returns the results folder TRAINER__PLANS__2d."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    class nnUNetTrainer_imasegTest(nnUNetTrainer):  # nnU-Net names the results folder after the class
        def __init__(self, plans, configuration, fold, dataset_json, device=None):
            super().__init__(plans, configuration, fold, dataset_json, device or torch.device("cpu"))
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 2, 3, 1

    folder = preprocessed / DATASET
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False  # nnUNetTrainer.__init__ pops it
    dataset_json = json.loads((folder / "dataset.json").read_text())
    trainer = nnUNetTrainer_imasegTest(plans, "2d", fold, dataset_json, torch.device("cpu"))
    trainer.run_training()
    return Path(trainer.output_folder).parent
