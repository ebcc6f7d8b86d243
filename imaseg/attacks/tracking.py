"""What a gradient attack watches along its path: the worst iterate per sample (by hard Dice) and, per voxel,
the perturbation norm at which its predicted class first left the clean prediction.

The flip norm is measured along the attack path, so it is an upper bound on the distance to the voxel's
decision boundary (a straight line to the boundary may be shorter).
"""

from __future__ import annotations

import torch

from imaseg.metrics.dice import sample_dice

__all__ = ["FlipRecord", "IterateTracker"]


class FlipRecord:
    """Per voxel, the perturbation norm (``radius``) and the iterate (``step``) at which its predicted class
    first left ``clean_prediction`` (``inf`` / ``-1`` while it has not).

    Args:
        norm_of: the attack's perturbation norm, ``(B, C, *spatial) -> (B,)``.
        clean_prediction: the prediction to measure flips against; ``None``: the first observed one.
    """

    def __init__(self, norm_of, clean_prediction: torch.Tensor | None = None) -> None:
        self.norm_of = norm_of
        self.clean_prediction = clean_prediction
        self.radius: torch.Tensor | None = None
        self.step: torch.Tensor | None = None

    def observe(self, k: int, current: torch.Tensor, prediction: torch.Tensor) -> None:
        """Record the voxels whose class differs from the clean prediction for the first time at iterate ``k``."""
        if self.clean_prediction is None:  # no random start: iterate 0 is the clean input
            self.clean_prediction = prediction
        if self.radius is None or self.step is None:
            self.radius = torch.full(prediction.shape, float("inf"), device=prediction.device)
            self.step = torch.full(prediction.shape, -1, dtype=torch.int32, device=prediction.device)
        view = (-1, *([1] * (prediction.dim() - 1)))
        radius = self.norm_of(current).view(view).expand_as(self.radius)
        new = (prediction != self.clean_prediction) & (self.step < 0)
        self.radius = torch.where(new, radius, self.radius)
        self.step = torch.where(new, torch.full_like(self.step, k), self.step)


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
        self.flips = FlipRecord(norm_of, clean_prediction)
        self.best_delta = start.clone() if (track and start is not None) else None
        self.best_prediction: torch.Tensor | None = None
        self.best_dice: torch.Tensor | None = None

    @property
    def flip_radius(self) -> torch.Tensor | None:
        return self.flips.radius

    @property
    def flip_step(self) -> torch.Tensor | None:
        return self.flips.step

    @property
    def active(self) -> bool:
        return self.track or self.record

    def __call__(self, k: int, current: torch.Tensor, prediction: torch.Tensor, num_classes: int) -> None:
        """Observe iterate ``k`` (perturbation ``current``) and the prediction the forward pass made there."""
        if self.record:
            self.flips.observe(k, current, prediction)
        if self.track:
            self._track(current, prediction, num_classes)

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
