"""Soft Dice + cross-entropy per sample: the loss most segmenters are trained with (nnU-Net, IMA)."""

from __future__ import annotations

import torch.nn.functional as F

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss
from imaseg.functional import soft_dice_per_sample

__all__ = ["DiceCEAttackLoss"]


@register_attack_loss("dice-ce")
class DiceCEAttackLoss(AttackLoss):
    """``(1 - soft Dice) + mean CE`` per sample."""

    def per_sample(self, logits, target, *, step, steps, targeted):
        ce = self.spatial_mean(F.cross_entropy(logits, target, reduction="none"))
        return ce + soft_dice_per_sample(logits, target)
