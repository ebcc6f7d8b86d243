"""``configs/train.json`` of an exported bundle: the run's own preprocessing and training, on new data.

Written only where it can be honest: for a run trained from scratch. A fine-tuned run (PGD-AT, TRADES or IMA
started from a standard model's checkpoint) has a recipe of two trainings, and the first one's checkpoint is
not in the bundle, so its ``train.json`` would train something else; the bundle's README says so instead.

``python -m monai.bundle run --config_file configs/train.json --dataset_dir DATA --output_dir OUT`` preprocesses
``DATA`` (an MSD folder or image/label folder pair, as ``imaseg preprocess`` reads) with the run's preprocessing
into ``OUT/cache`` and trains with the run's resolved settings into ``OUT/run`` (an ordinary imaseg run
folder, resumable: run it again to continue). Every setting is a key of the config, so MONAI's overrides
work: ``--train#epochs 5``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from imaseg.cache.writer import preprocess_dataset
from imaseg.config import config_from_dict
from imaseg.run_model import RunModel
from imaseg.training.config import TrainConfig
from imaseg.transforms.chain import PreprocessConfig

__all__ = ["train_config", "train_from_bundle"]


def train_from_bundle(
    dataset_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], preprocess: dict, train: dict
) -> str:
    """Preprocess ``dataset_dir`` into ``output_dir/cache`` and train into ``output_dir/run``; returns the run.

    The cache is reused when it already holds the same preprocessing; an interrupted training resumes.
    """
    from imaseg.training.trainer import train as train_run

    out = Path(output_dir)
    preprocessing = config_from_dict(PreprocessConfig, preprocess, source="train.json: preprocess")
    settings = config_from_dict(TrainConfig, train, source="train.json: train")
    preprocess_dataset(dataset_dir, out / "cache", preprocessing, progress=False)
    resume = (out / "run").is_dir()
    train_run(out / "cache", out / "run", settings, resume=resume, progress=True)
    return str(out / "run")


def _bundle_path(name: str) -> dict:
    return {"_target_": "imaseg.prediction.bundle_components.bundle_file", "root": "@bundle_root", "path": name}


def train_config(model: RunModel) -> dict[str, Any] | None:
    """The ``train.json`` of ``model``'s run, or ``None`` where the run was fine-tuned from another checkpoint."""
    settings = dict(model.run.train_settings())
    if settings.get("init"):
        return None
    return {
        "bundle_root": ".",
        "dataset_dir": _bundle_path("data"),
        "output_dir": _bundle_path("train_output"),
        "preprocess": dict(model.preprocessing_record.config),
        "train": settings,
        "run": [
            {
                "_target_": "imaseg.prediction.bundle_training.train_from_bundle",
                "dataset_dir": "@dataset_dir",
                "output_dir": "@output_dir",
                "preprocess": "@preprocess",
                "train": "@train",
            }
        ],
    }
