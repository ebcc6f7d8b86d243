"""What a training run optimises with: the optimiser, the learning-rate schedule, the batch augmentation."""

from __future__ import annotations

import math

import torch
from torch import nn

from imaseg.training.augment import BatchAugment
from imaseg.training.config import TrainConfig

__all__ = ["build_augment", "build_optimizer", "lr_factor"]


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` as a fraction of ``config.lr``: linear warm-up, then the schedule."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "constant":
        return 1.0
    progress = (epoch - config.warmup_epochs) / max(config.epochs - config.warmup_epochs, 1)
    if config.schedule == "poly":
        return (1 - progress) ** 0.9
    return 0.5 * (1 + math.cos(math.pi * progress))


def build_optimizer(config: TrainConfig, network: nn.Module) -> torch.optim.Optimizer:
    """AdamW, or SGD with Nesterov momentum 0.99 (nnU-Net's), at ``config.lr``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            network.parameters(), lr=config.lr, momentum=0.99, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def build_augment(config: TrainConfig) -> BatchAugment | None:
    """The batch augmentation of ``config`` (``None`` when it is off)."""
    if not config.augment:
        return None
    return BatchAugment(
        rotate=config.aug_rotate,
        scale=config.aug_scale,
        flip=config.aug_flip,
        intensity=config.aug_intensity,
        noise=config.aug_noise,
    )
