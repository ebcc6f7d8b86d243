"""Difference-of-logits ratio (Croce & Hein, ICML 2020), per voxel, for segmentation.

Per voxel, ``(max_{i != y} z_i - z_y) / (z_pi1 - z_pi3)``: the margin of the true class, divided by the
spread of the top logits, so the loss does not change when the logits are scaled or shifted (a model that
inflates its logits cannot hide behind a saturated cross-entropy). Voxels that are already wrong by a
margin count as that margin (capped at ``cap``), so the gradient goes where voxels can still flip. With two
classes there is no third logit: the spread is the sample's mean absolute logit gap (detached).
"""

from __future__ import annotations

import torch

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss

__all__ = ["DLRAttackLoss", "dlr_per_voxel"]


def dlr_per_voxel(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """``(B, *spatial)`` DLR of every voxel (positive when the voxel is misclassified)."""
    true = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    others = logits.scatter(1, target.unsqueeze(1), float("-inf")).amax(1)
    if logits.shape[1] >= 3:
        top = logits.topk(3, dim=1).values
        spread = top[:, 0] - top[:, 2]
    else:
        gap = (logits[:, 1] - logits[:, 0]).abs().detach()
        spread = gap.flatten(1).mean(1).view(-1, *([1] * (gap.dim() - 1))).expand_as(gap)
    return (others - true) / (spread + eps)


@register_attack_loss("dlr")
class DLRAttackLoss(AttackLoss):
    """Voxel-mean DLR, each voxel capped at ``cap`` (2: twice the top-logit spread past the boundary; on the
    demo model a cap of 2 was stronger than 0.5 or none)."""

    def __init__(self, cap: float = 2.0) -> None:
        super().__init__()
        self.cap = float(cap)

    def per_sample(self, logits, target, *, step, steps, targeted):
        dlr = dlr_per_voxel(logits, target)
        if targeted:
            dlr = -dlr
        return self.spatial_mean(dlr.clamp(max=self.cap))
