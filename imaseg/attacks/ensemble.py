"""Worst case over several attacks: per sample, the member that lowers the batch's global Dice most."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.registry import AttackSettings, create_attack, member_names, register_attack
from imaseg.attacks.result import AttackResult
from imaseg.metrics.dice import confusion_counts
from imaseg.metrics.worst import choose_worst

__all__ = ["WorstCase", "build_worst_case"]


class WorstCase(Attack):
    """Run every attack and take, per sample, the member whose prediction lowers the batch's *global* Dice most.

    The rule is the one evaluation uses over a whole test set (:func:`imaseg.metrics.worst.choose_worst`):
    start from the member with the lowest global Dice over the batch (tp / fp / fn summed over every voxel
    of every sample, then the mean over classes), then switch a sample to another member's prediction
    whenever that lowers the global Dice. The result is never above any single member's global Dice, which
    the per-sample lowest Dice does not guarantee. ``result.source[i]`` says which attack sample ``i`` took.
    All attacks must share the model and norm; ``eps`` given at call time is passed to each of them.

    Args:
        attacks: the attacks, e.g. APGD on soft Dice, APGD on DLR, CosPGD, SegPGD and noise.
    """

    def __init__(self, attacks: Sequence[Attack]) -> None:
        attacks = list(attacks)
        if not attacks:
            raise ValueError("`attacks` must hold at least one attack")
        norms = {a.norm for a in attacks}
        if len(norms) != 1:
            raise ValueError(f"all attacks of a worst case must share one norm, got {sorted(norms)}")
        first = attacks[0]
        super().__init__(first.model, eps=first.eps, norm=first.norm, clip_range=first.clip_range, seed=first.seed)
        self.attacks = attacks

    def __repr__(self) -> str:
        return f"WorstCase({', '.join(map(repr, self.attacks))})"

    def run(self, image, label, *, eps=None) -> AttackResult:
        _, y = self.check_inputs(image, label)
        results = []
        for attack in self.attacks:
            candidate = attack.run(image, label, eps=eps)
            if candidate.dice is None or candidate.prediction is None:
                candidate.prediction, candidate.dice = attack.score(candidate.adversarial.float(), y)
            results.append(candidate)
        predictions = [cast(torch.Tensor, r.prediction) for r in results]
        classes = int(max(int(y.max()), *(int(p.max()) for p in predictions))) + 1
        counts = np.stack([_foreground_counts(p, y, classes) for p in predictions])  # (M, B, C-1, 3)
        choice = torch.as_tensor(choose_worst(counts), device=y.device)
        return _combine(results, choice)


def _foreground_counts(prediction: torch.Tensor, label: torch.Tensor, num_classes: int) -> np.ndarray:
    """``(B, C-1, 3)`` per sample and foreground class ``[tp, fp, fn]``."""
    tp, fp, fn = confusion_counts(prediction, label, max(num_classes, 2))
    return torch.stack([tp[:, 1:], fp[:, 1:], fn[:, 1:]], -1).cpu().numpy()


def _combine(results: list[AttackResult], choice: torch.Tensor) -> AttackResult:
    """Per sample ``i``, the fields of ``results[choice[i]]``; flip radii are the minimum over all members."""

    def pick(values: list[torch.Tensor | None]) -> torch.Tensor | None:
        if any(v is None for v in values):
            return None
        stacked = torch.stack(cast(list[torch.Tensor], values))  # (M, B, ...)
        return stacked[choice, torch.arange(choice.numel(), device=choice.device)]

    flips = [r.flip_radius for r in results]
    steps = [r.flip_step for r in results]
    radius, step = None, None
    if all(f is not None for f in flips):
        stacked = torch.stack(cast(list[torch.Tensor], flips))
        radius, first = stacked.min(0)
        if all(s is not None for s in steps):
            step = torch.stack(cast(list[torch.Tensor], steps)).gather(0, first[None])[0]
    return AttackResult(
        adversarial=cast(torch.Tensor, pick([r.adversarial for r in results])),
        dice=pick([r.dice for r in results]),
        norm=cast(torch.Tensor, pick([r.norm for r in results])),
        prediction=pick([r.prediction for r in results]),
        flip_radius=radius,
        flip_step=step,
        source=choice,
    )


@register_attack(
    "worst",
    "worst case over the other attacks of this norm: per sample, the member that lowers global Dice most",
    ensemble=True,
)
def build_worst_case(model, *, eps, norm: str, settings: AttackSettings) -> WorstCase:
    """The worst case over ``settings.members`` (kinds) at this norm, by the global-Dice rule."""
    return WorstCase([create_attack(name, model, eps=eps, settings=settings) for name in member_names(norm, settings)])
