"""Masked cross-entropy: only the voxels the model still gets right pull the attack."""

from __future__ import annotations

import torch.nn.functional as F

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss

__all__ = ["MaskedCrossEntropyAttackLoss"]


@register_attack_loss("masked-ce")
class MaskedCrossEntropyAttackLoss(AttackLoss):
    """Cross-entropy summed over the voxels still classified correctly, divided by all voxels.

    Voxels already flipped stop pulling (their cross-entropy would keep growing without changing Dice), so the
    steps go to voxels that can still flip. One of the losses of SEA's segmentation ensemble (Croce et al.,
    2024). Targeted: the voxels not yet at the target.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[2.0, -2.0]], [[-2.0, 2.0]]]])  # voxel 0 says class 0, voxel 1 class 1
        >>> target = torch.tensor([[[0, 0]]])  # voxel 1 is already wrong: only voxel 0 counts
        >>> round(float(MaskedCrossEntropyAttackLoss()(logits, target)[0]), 4)
        0.0091
    """

    def per_sample(self, logits, target, *, step, steps, targeted):
        ce = F.cross_entropy(logits, target, reduction="none")
        correct = (logits.detach().argmax(1) == target).float()
        mask = 1.0 - correct if targeted else correct
        return self.spatial_mean(ce * mask)
