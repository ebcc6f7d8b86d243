"""What a gradient attack watches along its path: the worst iterate per sample (by hard Dice) and, per voxel,
the perturbation norm at which its predicted class first left the clean prediction.

The flip norm is measured along the attack path, so it is an upper bound on the distance to the voxel's
decision boundary (a straight line to the boundary may be shorter).
"""

from __future__ import annotations

import torch

from imaseg.metrics.dice import sample_dice

__all__ = ["IterateTracker"]


class IterateTracker:
    """Keeps the worst iterate (``track``) and the flip record (``record``) of one attack path.

    Args:
        y: ``(B, *spatial)`` labels (the target when ``targeted``).
        norm_of: the attack's perturbation norm, ``(B, C, *spatial) -> (B,)``.
        track: keep the per-sample worst iterate (lowest Dice; highest when ``targeted``).
        record: record per-voxel flip norms and steps.
        targeted: the attack descends towards ``y``.
        clean_prediction: the clean prediction to measure flips against; ``None``: the first observed
            iterate (an attack without a random start, whose iterate 0 is the clean input).
        start: the initial perturbation (the worst iterate until one is observed).
    """

    def __init__(
        self,
        y: torch.Tensor,
        norm_of,
        *,
        track: bool,
        record: bool,
        targeted: bool = False,
        clean_prediction: torch.Tensor | None = None,
        start: torch.Tensor | None = None,
    ) -> None:
        self.y, self.norm_of, self.track, self.record, self.targeted = y, norm_of, track, record, targeted
        self.clean_prediction = clean_prediction
        self.best_delta = start.clone() if (track and start is not None) else None
        self.best_prediction: torch.Tensor | None = None
        self.best_dice: torch.Tensor | None = None
        self.flip_radius: torch.Tensor | None = None
        self.flip_step: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        return self.track or self.record

    def __call__(self, k: int, current: torch.Tensor, prediction: torch.Tensor, num_classes: int) -> None:
        """Observe iterate ``k`` (perturbation ``current``) and the prediction the forward pass made there."""
        if self.record:
            self._record(k, current, prediction)
        if self.track:
            self._track(current, prediction, num_classes)

    def _record(self, k: int, current: torch.Tensor, prediction: torch.Tensor) -> None:
        if self.clean_prediction is None:  # no random start: iterate 0 is the clean input
            self.clean_prediction = prediction
        if self.flip_radius is None or self.flip_step is None:
            self.flip_radius = torch.full(prediction.shape, float("inf"), device=prediction.device)
            self.flip_step = torch.full(prediction.shape, -1, dtype=torch.int32, device=prediction.device)
        view = (-1, *([1] * (prediction.dim() - 1)))
        radius = self.norm_of(current).view(view).expand_as(self.flip_radius)
        new = (prediction != self.clean_prediction) & (self.flip_step < 0)
        self.flip_radius = torch.where(new, radius, self.flip_radius)
        self.flip_step = torch.where(new, torch.full_like(self.flip_step, k), self.flip_step)

    def _track(self, current: torch.Tensor, prediction: torch.Tensor, num_classes: int) -> None:
        dice = sample_dice(prediction, self.y, num_classes)
        if self.best_dice is None or self.best_prediction is None or self.best_delta is None:
            self.best_delta, self.best_prediction, self.best_dice = current.clone(), prediction, dice
            return
        better = dice > self.best_dice if self.targeted else dice < self.best_dice
        self.best_delta = torch.where(better.view(-1, *([1] * (current.dim() - 1))), current, self.best_delta)
        self.best_prediction = torch.where(
            better.view(-1, *([1] * (prediction.dim() - 1))), prediction, self.best_prediction
        )
        self.best_dice = torch.where(better, dice, self.best_dice)
