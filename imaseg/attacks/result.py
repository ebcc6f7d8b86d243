"""What an attack returns, and the per-sample "keep the worse of two results" rule that restarts,
noise draws and ensembles share."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AttackResult", "keep_worse", "worst_over_restarts"]


@dataclass
class AttackResult:
    """What an attack produced, per sample of the batch.

    Attributes:
        adversarial: ``(B, C, *spatial)`` detached adversarial images.
        dice: ``(B,)`` hard Dice of the prediction on ``adversarial`` (mean over present classes).
        norm: ``(B,)`` realised perturbation norm (after clipping), in the attack's norm.
        prediction: ``(B, *spatial)`` predicted classes on ``adversarial``.
        flip_radius: ``(B, *spatial)`` flip norm along the attack path: the perturbation norm at which each
            voxel's predicted class first changed from its clean prediction (``inf`` if never); an upper
            bound on the distance to the voxel's decision boundary; only when recorded.
        flip_step: ``(B, *spatial)`` the path iterate where that happened (``-1`` if never).
        source: ``(B,)`` index of the attack that produced each sample (ensembles), else zeros.
    """

    adversarial: torch.Tensor
    dice: torch.Tensor | None
    norm: torch.Tensor
    prediction: torch.Tensor | None
    flip_radius: torch.Tensor | None = None
    flip_step: torch.Tensor | None = None
    source: torch.Tensor | None = None


def keep_worse(current: AttackResult, candidate: AttackResult, *, targeted: bool = False) -> AttackResult:
    """Per sample, the result with the lower Dice (higher when ``targeted``); ties keep ``current``."""
    if current.dice is None or candidate.dice is None:  # restarts, noise draws and ensembles all score
        raise RuntimeError("keep_worse needs the Dice of both results")
    better = candidate.dice > current.dice if targeted else candidate.dice < current.dice

    def pick(a, b):
        if a is None or b is None:
            return a
        mask = better.view(-1, *([1] * (a.dim() - 1)))
        return torch.where(mask, b, a)

    flips = None
    if current.flip_radius is not None and candidate.flip_radius is not None:
        flips = torch.minimum(current.flip_radius, candidate.flip_radius)
    steps = None
    if current.flip_step is not None and candidate.flip_step is not None:
        assert current.flip_radius is not None and candidate.flip_radius is not None  # recorded together
        steps = torch.where(candidate.flip_radius < current.flip_radius, candidate.flip_step, current.flip_step)
    return AttackResult(
        adversarial=pick(current.adversarial, candidate.adversarial),
        dice=pick(current.dice, candidate.dice),
        norm=pick(current.norm, candidate.norm),
        prediction=pick(current.prediction, candidate.prediction),
        flip_radius=flips,
        flip_step=steps,
        source=pick(current.source, candidate.source),
    )


def worst_over_restarts(restarts: int, path, *, targeted: bool = False) -> AttackResult:
    """Run ``path()`` ``restarts`` times (each draws a new random start) and keep the per-sample worst."""
    result = None
    for _ in range(restarts):
        candidate = path()
        result = candidate if result is None else keep_worse(result, candidate, targeted=targeted)
    if result is None:
        raise ValueError(f"`restarts` must be >= 1, got {restarts}")
    return result
