"""Per-sample losses shared by attacks and training: soft Dice, Dice + CE, weighted CE, KL (2D and 3D alike).

Every function returns one value per sample, ``(B,)``, so each sample's gradient stays independent of
the others in the batch. Attacks (which ascend them) and training methods (which descend them) both
import from here; neither imports the other.

Example:
    >>> import torch
    >>> logits, target = torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    >>> tuple(dice_ce_per_sample(logits, target).shape)
    (2,)
    >>> float(kl_per_sample(logits, logits.softmax(1))[0])
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "as_class_labels",
    "dice_ce_per_sample",
    "kl_per_sample",
    "soft_dice_per_sample",
    "weighted_ce_per_sample",
]


def as_class_labels(label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """MONAI's label conventions -> ``(B, *spatial)`` int64 class indices on the image's device.

    Accepts ``(B, *spatial)`` or ``(B, 1, *spatial)``, integer or float (as ``LoadImaged`` yields) or a
    ``MetaTensor``.

    >>> image = torch.zeros(2, 1, 4, 4)
    >>> as_class_labels(torch.ones(2, 1, 4, 4), image).shape, as_class_labels(torch.ones(2, 1, 4, 4), image).dtype
    (torch.Size([2, 4, 4]), torch.int64)

    Raises:
        ValueError: the shape does not fit the image.
        TypeError: a float label with non-integer values (a probability map is not a label).
    """
    label = label.as_tensor() if hasattr(label, "as_tensor") else label
    if label.dim() == image.dim() and label.shape[1] == 1:
        label = label[:, 0]
    if label.shape != (image.shape[0], *image.shape[2:]):
        raise ValueError(
            f"label shape {tuple(label.shape)} does not match image shape {tuple(image.shape)}; "
            "expected (B, *spatial) or (B, 1, *spatial)"
        )
    if label.is_floating_point() and not bool(torch.all(label == torch.round(label))):
        raise TypeError("`label` must hold integer class indices; got non-integer values (a probability map?)")
    return label.detach().long().to(image.device)


def soft_dice_per_sample(
    logits: torch.Tensor, target: torch.Tensor, *, include_background: bool = False, smooth: float = 1e-5
) -> torch.Tensor:
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


def kl_per_sample(adv_logits: torch.Tensor, clean_probs: torch.Tensor) -> torch.Tensor:
    """Voxel-mean ``KL(clean || adv)`` over the class axis, ``(B,)`` (TRADES' divergence)."""
    log_adv = F.log_softmax(adv_logits.float(), dim=1)
    kl = (clean_probs * (clean_probs.clamp_min(1e-12).log() - log_adv)).sum(1)
    return kl.flatten(1).mean(1)
