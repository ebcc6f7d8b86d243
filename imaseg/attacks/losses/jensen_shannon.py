"""Jensen-Shannon divergence between the predicted class distribution and the target, per voxel."""

from __future__ import annotations

import torch.nn.functional as F

from imaseg.attacks.losses.base import AttackLoss, register_attack_loss

__all__ = ["JensenShannonAttackLoss"]


@register_attack_loss("js")
class JensenShannonAttackLoss(AttackLoss):
    """Voxel-mean Jensen-Shannon divergence between the softmax and the one-hot target, in ``[0, ln 2]``.

    Bounded per voxel, unlike cross-entropy, so voxels already far past the boundary cannot dominate the
    gradient. One of the losses of SEA's segmentation ensemble (Croce et al., 2024).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[9.0]], [[-9.0]]]])
        >>> loss = JensenShannonAttackLoss()
        >>> round(float(loss(logits, torch.tensor([[[0]]]))[0]), 4), round(float(loss(logits, torch.tensor([[[1]]]))[0]), 3)
        (0.0, 0.693)
    """

    def per_sample(self, logits, target, *, step, steps, targeted):
        p = logits.softmax(1)
        q = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(p.dtype)
        m = 0.5 * (p + q)
        log_m = m.clamp_min(1e-12).log()
        kl_p = (p * (p.clamp_min(1e-12).log() - log_m)).sum(1)
        kl_q = -(q * log_m).sum(1)  # q log q = 0 for a one-hot target
        divergence = 0.5 * (kl_p + kl_q)
        return self.spatial_mean(-divergence if targeted else divergence)
