"""Worst case over several attacks, per sample (a true running minimum, not "lower than the previous")."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.registry import AttackSettings, create_attack, member_names, register_attack
from imaseg.attacks.result import AttackResult, keep_worse

__all__ = ["WorstCase", "build_worst_case"]


class WorstCase(Attack):
    """Run every attack and keep, per sample, the adversarial example with the lowest Dice.

    ``result.source[i]`` says which attack won sample ``i``. All attacks must share the model, norm
    and budget semantics; ``eps`` given at call time is passed to each of them.

    Args:
        attacks: the attacks, e.g. PGD with a CE loss and PGD with a soft-Dice loss.
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
        result = None
        for index, attack in enumerate(self.attacks):
            candidate = attack.run(image, label, eps=eps)
            if candidate.dice is None or candidate.prediction is None:
                with torch.no_grad():
                    x, y = attack._validate(candidate.adversarial, label)
                    candidate.prediction, candidate.dice = attack._evaluate(x.float(), y)
            candidate.source = torch.full_like(candidate.dice, index, dtype=torch.long)
            result = candidate if result is None else keep_worse(result, candidate)
        if result is None:  # at least one attack (checked in __init__)
            raise RuntimeError("the worst case ran no attack")
        return result


@register_attack("worst", "per-slice worst case over the other attacks of this norm", ensemble=True)
def build_worst_case(model, *, eps, norm: str, settings: AttackSettings) -> WorstCase:
    """The per-sample worst case over ``settings.members`` (kinds) at this norm."""
    return WorstCase([create_attack(name, model, eps=eps, settings=settings) for name in member_names(norm, settings)])
