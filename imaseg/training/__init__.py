"""Robust training: standard, PGD-AT, TRADES and IMA (sample- or voxel-level), resumable and DDP-ready."""

from imaseg.training.config import TrainConfig
from imaseg.training.methods import Method, build_method, method_names, register_method
from imaseg.training.trainer import build_model_from_config, train

__all__ = [
    "Method",
    "TrainConfig",
    "build_method",
    "build_model_from_config",
    "method_names",
    "register_method",
    "train",
]
