"""Per-sample segmentation losses shared by every training method (2D and 3D alike)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from imaseg.attacks.losses.soft_dice import soft_dice_per_sample

__all__ = ["dice_ce_per_sample", "weighted_ce_per_sample"]


def dice_ce_per_sample(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice (foreground, per sample) + voxel-mean cross-entropy, ``(B,)``.

    Args:
        logits: ``(B, C, *spatial)``.
        target: ``(B, *spatial)`` class indices.
    """
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    ce = F.cross_entropy(logits.float(), target, reduction="none").flatten(1).mean(1)
    return ce + soft_dice_per_sample(logits.float(), target)


def weighted_ce_per_sample(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged with per-voxel ``weight`` ``(B, *spatial)``: ``sum(w * ce) / sum(w)`` per sample."""
    ce = F.cross_entropy(logits.float(), target, reduction="none")
    return (weight * ce).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1e-6)
