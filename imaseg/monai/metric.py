"""Dice under attack with MONAI's cumulative metric API."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from torch import nn

from imaseg.attacks import AttackSettings, create_attack
from imaseg.metrics.dice import confusion_counts
from imaseg.metrics.worst import mean_global_dice
from imaseg.monai.labels import class_indices
from imaseg.utils.checks import check_choice

__all__ = ["RobustDiceMetric"]


class RobustDiceMetric(CumulativeIterationMetric):
    """Attack each batch and accumulate the hard Dice of the attacked prediction.

    Called as ``metric(images, labels)`` (images, not predictions: the metric attacks them), any number
    of times; :meth:`aggregate` gives the Dice over everything seen.

    Args:
        network: the segmentation network (logits ``(B, K, *spatial)``).
        num_classes: classes including background.
        attack: a registered attack name ``KIND-NORM``.
        eps: budget in model-input units.
        settings: the attack's shared settings (steps, clip range, seed...).
        reduction: ``"global"`` (imaseg's headline: Dice of the summed voxel counts per class, then the
            mean over classes) or ``"mean"`` (mean over samples of the per-sample class-mean Dice).

    Example:
        >>> net = nn.Conv2d(1, 2, 1)
        >>> metric = RobustDiceMetric(net, 2, attack="noise-l2", eps=0.1)
        >>> _ = metric(torch.rand(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))
        >>> metric.aggregate().shape
        torch.Size([])
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        *,
        attack: str = "apgd-dice-l2",
        eps: float = 1.0,
        settings: AttackSettings | None = None,
        reduction: str = "global",
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be >= 2 (background included), got {num_classes}")
        self.num_classes = num_classes
        self.reduction = check_choice("reduction", reduction, ("global", "mean"))
        self.attack = create_attack(attack, network, eps=eps, settings=settings or AttackSettings())

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> Any:
        if not isinstance(y_pred, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise TypeError("call RobustDiceMetric(images, labels) with batch-first tensors")
        return super().__call__(y_pred, y, **kwargs)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("RobustDiceMetric needs labels: metric(images, labels)")
        images = y_pred.as_tensor() if hasattr(y_pred, "as_tensor") else y_pred
        labels = class_indices(y, images)
        prediction = self.attack.run(images, labels).prediction
        if prediction is None:
            raise RuntimeError(f"{self.attack!r} returned no prediction")
        tp, fp, fn = confusion_counts(prediction, labels, self.num_classes)
        return torch.stack([tp, fp, fn], -1)[:, 1:].cpu()  # (B, K-1, 3), foreground classes

    def aggregate(self) -> torch.Tensor:
        """The Dice over every sample seen since the last :meth:`reset` (a scalar tensor)."""
        counts = self.get_buffer()
        if not isinstance(counts, torch.Tensor) or counts.numel() == 0:
            raise ValueError("RobustDiceMetric has seen no data; call it with (images, labels) first")
        array = counts.double().numpy()
        if self.reduction == "global":
            return torch.tensor(float(mean_global_dice(array.sum(0))))
        per_sample = mean_global_dice(array)  # per sample over its present classes
        return torch.tensor(float(np.nanmean(per_sample)))
