"""APGD cascade: APGD on several losses in turn, each only on the samples the earlier ones left standing.

Issue 24's attack-reference benchmark (``benchmarks/attack_reference.py``) found the previous default ensemble
(APGD on soft Dice and on DLR, CosPGD, SegPGD, 20 steps each) 0.002-0.054 global Dice above a reference worst case
of 7.5x its compute, carried by more steps and by the class-balanced cross entropy. The cascade chosen on its
validation slices spends the same budget of gradient steps differently:

1. APGD on the DLR loss, ``steps`` steps, on every sample;
2. APGD on the per-sample soft Dice, ``2 * steps`` steps,
3. then APGD on the class-balanced cross entropy, ``2 * steps`` steps,

each on the samples whose ground-truth foreground the earlier members have not yet erased (a sample with ground
truth and no true-positive voxel left is finished: no attack can lower its Dice further). Per sample the result is
the member whose prediction lowers the batch's *global* Dice most (the rule of
:class:`~imaseg.attacks.WorstCase`), so the cascade is never weaker than any member that ran on a sample. At
``steps`` 20: 20 + 40 + 40 gradient steps on a sample that survives all three, fewer on one erased early.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch

from imaseg.attacks.apgd import APGD
from imaseg.attacks.base import Attack
from imaseg.attacks.ensemble import _combine, _foreground_counts
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.attacks.result import AttackResult
from imaseg.metrics.worst import choose_worst
from imaseg.utils.checks import check_positive_int

__all__ = ["CASCADE", "APGDCascade", "build_apgd_cascade", "finished_samples"]

CASCADE: tuple[tuple[str, int], ...] = (("dlr", 1), ("dice", 2), ("balanced-ce", 2))
"""The members: (APGD loss, steps as a multiple of ``steps``), in the order they run."""


def finished_samples(prediction: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """``(B,)`` True where the ground truth has foreground and the prediction hits none of it.

    >>> label = torch.tensor([[[0, 1]], [[0, 1]], [[0, 0]]])
    >>> finished_samples(torch.tensor([[[0, 0]], [[0, 1]], [[0, 0]]]), label).tolist()
    [True, False, False]
    """
    foreground = label > 0
    hit = (foreground & (prediction == label)).flatten(1).any(1)
    return foreground.flatten(1).any(1) & ~hit


class APGDCascade(Attack):
    """APGD on each loss of ``cascade`` in turn, each on the samples not yet finished (see the module docstring).

    Args:
        model, eps, norm, clip_range, seed, autocast_dtype: see :class:`~imaseg.attacks.Attack`.
        steps: the first member's steps; the others take theirs as multiples of it (:data:`CASCADE`).
        cascade: ``(loss, steps multiple)`` per member, in order.
        restarts, record_flips: passed to every member.
    """

    def __init__(
        self,
        model,
        *,
        eps: float | torch.Tensor,
        norm: str = "l2",
        steps: int = 20,
        cascade: Sequence[tuple[str, int]] = CASCADE,
        restarts: int = 1,
        record_flips: bool = False,
        clip_range: tuple[float, float] | None = None,
        seed: int | None = 0,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(model, eps=eps, norm=norm, clip_range=clip_range, seed=seed, autocast_dtype=autocast_dtype)
        self.steps = check_positive_int("steps", steps)
        self.cascade = tuple((str(loss), check_positive_int("steps multiple", int(k))) for loss, k in cascade)
        if not self.cascade:
            raise ValueError("`cascade` must hold at least one (loss, steps multiple)")
        self.restarts = check_positive_int("restarts", restarts)
        self.record_flips = bool(record_flips)

    def members(self) -> list[APGD]:
        """The member attacks, in the order they run."""
        return [
            APGD(
                self.model,
                eps=self.eps,
                norm=self.norm,
                steps=self.steps * multiple,
                loss=loss,
                restarts=self.restarts,
                record_flips=self.record_flips,
                clip_range=self.clip_range,
                seed=None if self.seed is None else self.seed + position,
                autocast_dtype=self.autocast_dtype,
            )
            for position, (loss, multiple) in enumerate(self.cascade)
        ]

    def _run(self, x, y, eps, generator) -> AttackResult:
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        results: list[AttackResult] = []
        for member in self.members():
            index = active.nonzero().flatten()
            if index.numel() == 0:
                break
            if self.generator is not None:
                member.generator = generator
            part = member.run(x[index], y[index], eps=eps[index])
            results.append(_full_batch(part, index, results[-1] if results else None))
            active[index[finished_samples(cast(torch.Tensor, part.prediction), y[index])]] = False
        predictions = [cast(torch.Tensor, r.prediction) for r in results]
        classes = int(max(int(y.max()), *(int(p.max()) for p in predictions))) + 1
        counts = np.stack([_foreground_counts(p, y, classes) for p in predictions])  # (M, B, C-1, 3)
        return _combine(results, torch.as_tensor(choose_worst(counts), device=y.device))


def _full_batch(part: AttackResult, index: torch.Tensor, previous: AttackResult | None) -> AttackResult:
    """``part`` (a result on the samples at ``index``) widened to the batch: the samples it skipped keep the
    previous member's result (finished ones: nothing later could lower their Dice)."""
    if previous is None:  # the first member runs on every sample
        return part

    def widen(value: torch.Tensor | None, old: torch.Tensor | None) -> torch.Tensor | None:
        if value is None or old is None:
            return None
        full = old.clone()
        full[index] = value.to(full.dtype)
        return full

    return AttackResult(
        adversarial=cast(torch.Tensor, widen(part.adversarial, previous.adversarial)),
        dice=widen(part.dice, previous.dice),
        norm=cast(torch.Tensor, widen(part.norm, previous.norm)),
        prediction=widen(part.prediction, previous.prediction),
        flip_radius=widen(part.flip_radius, previous.flip_radius),
        flip_step=widen(part.flip_step, previous.flip_step),
    )


@register_attack(
    "apgd-cascade",
    "APGD on DLR ({steps} steps), then on soft Dice and on class-balanced CE (2 x {steps} steps each), each on the "
    "samples whose foreground the earlier ones left standing; per sample the member that lowers global Dice most, "
    "{restarts} restart(s)",
    records_flips=True,
    citation="APGD: Croce & Hein, ICML 2020; balanced CE as in SEA (Croce et al., 2024); cascade chosen in imaseg's "
    "attack-reference benchmark (issue 24)",
)
def build_apgd_cascade(model, *, eps, norm: str, settings: AttackSettings) -> APGDCascade:
    """The cascade at ``settings.steps`` (the first member's steps)."""
    return APGDCascade(
        model,
        steps=settings.steps,
        restarts=settings.restarts,
        record_flips=settings.record_flips,
        norm=norm,
        **settings.base_arguments(eps),
    )
