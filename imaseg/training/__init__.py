"""Robust training: standard, PGD-AT, TRADES and IMA (sample- or voxel-level), resumable and DDP-ready."""

from imaseg.training.checkpoint import load_checkpoint, save_checkpoint
from imaseg.training.config import METHODS, TrainConfig
from imaseg.training.methods import build_method
from imaseg.training.trainer import build_model_from_config, resolve_device, train

__all__ = [
    "METHODS",
    "TrainConfig",
    "build_method",
    "build_model_from_config",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "train",
]
