"""Standard training: per-sample soft Dice + cross-entropy on clean images."""

from __future__ import annotations

import torch
from torch import nn

from imaseg.functional import dice_ce_per_sample
from imaseg.training.methods.registry import LossLogs, Method, register_method

__all__ = ["Standard"]


@register_method("std")
class Standard(Method):
    """Clean training, the baseline every robust method is compared with."""

    order = 0

    def loss(
        self,
        model: nn.Module,
        network: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, LossLogs]:
        loss = dice_ce_per_sample(model(images).float(), labels).mean()
        return loss, {}
