"""CosPGD weighting (Agnihotri, Jung, Keuper, "CosPGD: an efficient white-box adversarial attack for
pixel-wise prediction tasks", ICML 2024).

Per-voxel cross-entropy scaled by the cosine similarity between the softmax output and the one-hot
target (detached): voxels the model still gets right weigh most, voxels already lost weigh little.
Targeted attacks use ``1 - cos``.
"""

from __future__ import annotations

import torch.nn.functional as F

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss

__all__ = ["CosPGDAttackLoss"]


@register_attack_loss("cospgd")
class CosPGDAttackLoss(AttackLoss):
    def per_sample(self, logits, target, *, step, steps, targeted):
        ce = F.cross_entropy(logits, target, reduction="none")
        onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
        cosine = F.cosine_similarity(logits.detach().softmax(1), onehot, dim=1)
        weight = 1 - cosine if targeted else cosine
        return self.spatial_mean(weight * ce)
