"""Pixel/voxel-mean cross-entropy: the classic PGD objective."""

from __future__ import annotations

import torch.nn.functional as F

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss

__all__ = ["CrossEntropyAttackLoss"]


@register_attack_loss("ce")
class CrossEntropyAttackLoss(AttackLoss):
    """Mean cross-entropy over voxels, per sample. Saturates at large budgets (every voxel already wrong)."""

    def per_sample(self, logits, target, *, step, steps, targeted):
        return self.spatial_mean(F.cross_entropy(logits, target, reduction="none"))
