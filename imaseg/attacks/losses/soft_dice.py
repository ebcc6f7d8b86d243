"""Soft Dice loss per sample: does not saturate like CE, so it is the stronger attack at large budgets."""

from __future__ import annotations

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss
from imaseg.functional import soft_dice_per_sample

__all__ = ["SoftDiceAttackLoss"]


@register_attack_loss("dice")
class SoftDiceAttackLoss(AttackLoss):
    """``1 - soft Dice`` over the foreground classes, per sample (smooth 1e-5, as nnU-Net)."""

    def per_sample(self, logits, target, *, step, steps, targeted):
        return soft_dice_per_sample(logits, target)
