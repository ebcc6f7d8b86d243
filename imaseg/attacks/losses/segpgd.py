"""SegPGD weighting (Gu et al., "SegPGD: An effective and efficient adversarial attack for evaluating
and boosting segmentation robustness", ECCV 2022).

Per-voxel cross-entropy where voxels still classified correctly get weight ``1 - lambda_t`` and voxels
already wrong get ``lambda_t``, with ``lambda_t = t / (2T)`` growing over the steps: early steps push
the correct voxels over, later ones keep the wrong ones wrong. Targeted attacks swap the weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss
from imaseg.metrics.prediction import predict_classes

__all__ = ["SegPGDAttackLoss"]


@register_attack_loss("segpgd")
class SegPGDAttackLoss(AttackLoss):
    def per_sample(self, logits, target, *, step, steps, targeted):
        lam = step / (2 * max(steps, 1))
        ce = F.cross_entropy(logits, target, reduction="none")
        correct = predict_classes(logits.detach()) == target
        if targeted:
            correct = ~correct
        weight = torch.where(correct, torch.full_like(ce, 1 - lam), torch.full_like(ce, lam))
        return self.spatial_mean(weight * ce)
