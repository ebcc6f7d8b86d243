"""Class-balanced cross-entropy: every class present in the target weighs the same, whatever its size."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss

__all__ = ["BalancedCrossEntropyAttackLoss"]


@register_attack_loss("balanced-ce")
class BalancedCrossEntropyAttackLoss(AttackLoss):
    """Per sample, the mean over the classes present in the target of each class's mean voxel cross-entropy.

    A small structure (the myocardium, a lung apex) pulls as hard as the background, which a voxel-mean
    cross-entropy drowns. One of the losses of SEA's segmentation ensemble (Croce et al., 2024).

    Example:
        >>> logits = torch.zeros(1, 2, 1, 4)
        >>> target = torch.tensor([[[0, 0, 0, 1]]])
        >>> round(float(BalancedCrossEntropyAttackLoss()(logits, target)[0]), 4)  # ln 2 for both classes
        0.6931
    """

    def per_sample(self, logits, target, *, step, steps, targeted):
        ce = F.cross_entropy(logits, target, reduction="none").flatten(1)  # (B, V)
        onehot = F.one_hot(target.flatten(1), logits.shape[1]).float()  # (B, V, C)
        counts = onehot.sum(1)  # (B, C)
        per_class = torch.einsum("bv,bvc->bc", ce, onehot) / counts.clamp_min(1)
        present = (counts > 0).float()
        return (per_class * present).sum(1) / present.sum(1).clamp_min(1)
