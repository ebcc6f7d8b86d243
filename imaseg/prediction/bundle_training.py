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

from typing import Any

from imaseg.run_model import RunModel

__all__ = ["train_config"]

TRAIN_ENTRY = "imaseg.training.from_bundle.train_from_bundle"
"""What ``train.json`` runs (in the training layer: prediction never imports training)."""


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
                "_target_": TRAIN_ENTRY,
                "dataset_dir": "@dataset_dir",
                "output_dir": "@output_dir",
                "preprocess": "@preprocess",
                "train": "@train",
            }
        ],
    }
