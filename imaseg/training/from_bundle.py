"""The entry point of an exported bundle's ``configs/train.json`` (written by
:mod:`imaseg.prediction.bundle_training`): preprocess new labelled data as the bundle's model's were, and
train with its run's settings."""

from __future__ import annotations

import os
from pathlib import Path

from imaseg.cache.writer import preprocess_dataset
from imaseg.config import config_from_dict
from imaseg.training.config import TrainConfig
from imaseg.transforms.chain import PreprocessConfig

__all__ = ["train_from_bundle"]


def train_from_bundle(
    dataset_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str], preprocess: dict, train: dict
) -> str:
    """Preprocess ``dataset_dir`` into ``output_dir/cache`` and train into ``output_dir/run``; returns the run.

    The cache is reused when it already holds the same preprocessing; an interrupted training resumes.
    """
    from imaseg.training.trainer import train as train_run  # the trainer imports torch-heavy modules

    out = Path(output_dir)
    preprocessing = config_from_dict(PreprocessConfig, preprocess, source="train.json: preprocess")
    settings = config_from_dict(TrainConfig, train, source="train.json: train")
    preprocess_dataset(dataset_dir, out / "cache", preprocessing, progress=False)
    resume = (out / "run").is_dir()
    train_run(out / "cache", out / "run", settings, resume=resume, progress=True)
    return str(out / "run")
