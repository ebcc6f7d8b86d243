"""Soft Dice loss per sample: does not saturate like CE, so it is the stronger attack at large budgets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss

__all__ = ["SoftDiceAttackLoss", "soft_dice_per_sample"]


def soft_dice_per_sample(
    logits: torch.Tensor, target: torch.Tensor, *, include_background: bool = False, smooth: float = 1e-5
):
    """``1 - mean_c softDice_c`` per sample, ``(B,)``; classes over ``range(2, ndim)`` reduced as one path."""
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    dims = tuple(range(2, logits.dim()))
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * intersection + smooth) / (denominator + smooth)
    return 1 - dice.mean(1)


@register_attack_loss("dice")
class SoftDiceAttackLoss(AttackLoss):
    """``1 - soft Dice`` over the foreground classes, per sample (smooth 1e-5, as nnU-Net)."""

    def per_sample(self, logits, target, *, step, steps, targeted):
        return soft_dice_per_sample(logits, target)
