"""Hard Dice from label maps, per sample and per class, 2D and 3D in one code path.

Counting goes through one ``bincount`` over ``target * C + pred`` per sample, so a batch of label
maps becomes a ``(B, C, C)`` confusion matrix without one-hot tensors.
"""

from __future__ import annotations

import torch

from imaseg.utils.checks import check_choice

__all__ = ["confusion_counts", "dice_from_counts", "sample_dice"]

REDUCTIONS = ("mean", "min", "max")


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, ...]:
    """Per-sample, per-class ``(tp, fp, fn)``, each ``(B, C)`` int64, from label maps ``(B, *spatial)``."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    batch = pred.shape[0]
    offsets = torch.arange(batch, device=pred.device).view(-1, *([1] * (pred.dim() - 1))) * num_classes * num_classes
    index = (offsets + target.long() * num_classes + pred.long()).reshape(-1)
    matrix = torch.bincount(index, minlength=batch * num_classes * num_classes).view(batch, num_classes, num_classes)
    tp = matrix.diagonal(dim1=1, dim2=2)
    fn = matrix.sum(2) - tp  # row = target
    fp = matrix.sum(1) - tp  # column = prediction
    return tp, fp, fn


def dice_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, empty: float = float("nan")) -> torch.Tensor:
    """``2tp / (2tp + fp + fn)``, with ``empty`` where a class is absent from both prediction and target."""
    denominator = 2 * tp + fp + fn
    dice = (2 * tp).double() / denominator.clamp_min(1).double()
    return torch.where(denominator > 0, dice, torch.full_like(dice, empty)).float()


def sample_dice(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    *,
    reduction: str = "mean",
    include_background: bool = False,
) -> torch.Tensor:
    """One hard Dice per sample, ``(B,)``, over the classes present in the prediction or the target.

    A class absent from both does not count; a sample where every class is absent from both scores 1
    (nothing to find, nothing found). ``reduction`` picks mean, min or max over the counted classes.

    Example:
        >>> t = torch.tensor([[[0, 1], [2, 2]]]); p = torch.tensor([[[0, 1], [2, 0]]])
        >>> sample_dice(p, t, 3)
        tensor([0.8333])
    """
    reduction = check_choice("reduction", reduction, REDUCTIONS)
    tp, fp, fn = confusion_counts(pred, target, num_classes)
    dice = dice_from_counts(tp, fp, fn)
    if not include_background:
        dice = dice[:, 1:]
    present = ~torch.isnan(dice)
    if reduction == "mean":
        total = torch.where(present, dice, torch.zeros_like(dice)).sum(1)
        out = total / present.sum(1).clamp_min(1)
    elif reduction == "min":
        out = torch.where(present, dice, torch.full_like(dice, 2.0)).amin(1)
    else:
        out = torch.where(present, dice, torch.full_like(dice, -1.0)).amax(1)
    return torch.where(present.any(1), out, torch.ones_like(out))
