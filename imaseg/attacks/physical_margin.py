"""IMA's margin search for a physical threat: margins in the threat's own unit (``rel``, ``nsr``, ``asr``, ``mm``...).

The inner attack is the registered kind's optimised attack (PGD over the artefact's parameters) run at each
sample's margin ``E_i``. A sample *fails* when the predicate (:class:`~imaseg.attacks.margin_search.DicePredicate`)
fails on that worst case. For a failed sample the boundary is located by bisection on the ray from the clean
image to the attacked one, ``x + t (x_adv - x)``, ``t`` in ``[0, 1]``: the boundary estimate is ``t`` times the
budget the attack realised, and the boundary image is what the model trains on (as in the published sample
mode). For the kinds whose change scales with its budget (bias field: the field ``1 + t (f - 1)``; additive
noise; an intensity shift) the ray's images are the same artefact at a smaller budget; for k-space,
Rician noise and misregistration they are a blend, and ``t`` times the budget an estimate of the boundary.

Only IMA's sample mode takes a physical threat: voxel mode's flip record follows an L2 path.
"""

from __future__ import annotations

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.margin_search import DicePredicate, MarginResult
from imaseg.attacks.registry import AttackSettings, attack_spec, create_attack
from imaseg.metrics.dice import sample_dice
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_positive_int

__all__ = ["PhysicalMarginSearch", "physical_kinds"]


def physical_kinds() -> tuple[str, ...]:
    """The registered kinds with a physical budget that follow gradients (what IMA and PGD-AT train against)."""
    from imaseg.attacks.registry import ATTACKS, attack_kinds

    return tuple(k for k in attack_kinds(ensemble=False) if ATTACKS[k].unit and ATTACKS[k].gradient)


class PhysicalMarginSearch(Attack):
    """The worst case of kind ``threat`` inside each sample's margin, and its Dice = tau boundary on the ray.

    Args:
        model, clip_range, generator, autocast_dtype: see :class:`~imaseg.attacks.Attack`.
        threat: a physical kind (``bias-field``, ``snr-noise``, ...; :func:`physical_kinds`).
        eps: the margins in the kind's unit, usually given per call.
        steps: the kind's optimiser steps.
        predicate: the "still correct" test.
        bisection_steps: forward passes locating the boundary of a failed sample (0: the boundary is the
            realised budget of the worst case).
    """

    def __init__(
        self,
        model,
        *,
        threat: str,
        eps=0.0,
        steps: int = 10,
        predicate: DicePredicate | None = None,
        bisection_steps: int = 10,
        **common,
    ) -> None:
        super().__init__(model, eps=eps, norm="l2", **common)
        if threat not in physical_kinds():
            raise ValueError(f"`threat` must be one of {', '.join(physical_kinds())}, got {threat!r}")
        self.threat = threat
        self.norm = attack_spec(threat).norms[0]  # the kind's own unit
        self.steps = check_positive_int("steps", steps)
        self.predicate = predicate or DicePredicate()
        self.bisection_steps = check_positive_int("bisection_steps", bisection_steps, minimum=0)

    def _inner(self) -> Attack:
        settings = AttackSettings(steps=self.steps, clip_range=self.clip_range, autocast_dtype=self.autocast_dtype)
        inner = create_attack(f"{self.threat}-{self.norm}", self.model, eps=0.0, settings=settings)
        inner.generator = self.generator
        return inner

    def _run(self, x, y, eps, generator) -> MarginResult:
        inner = self._inner()
        inner.generator = generator
        worst = inner.run(x, y, eps=eps)
        if worst.prediction is None:  # every registered kind returns its prediction
            raise RuntimeError(f"the {self.threat} attack returned no prediction")
        with torch.no_grad():
            logits = self.logits_of(x)
            num_classes = logits.shape[1]
            threshold = self.predicate.threshold(self.predicate.score(predict_classes(logits), y, num_classes))
            failed = self.predicate.score(worst.prediction, y, num_classes) < threshold
            fraction = torch.ones_like(eps)
            adversarial, prediction = worst.adversarial, worst.prediction
            if self.bisection_steps and failed.any():
                fraction, adversarial, prediction = self._bisect(
                    x, y, worst.adversarial, worst.prediction, failed, threshold
                )
        return MarginResult(
            adversarial=adversarial,
            dice=sample_dice(prediction, y, num_classes),
            norm=worst.norm * fraction,
            prediction=prediction,
            source=torch.zeros(x.shape[0], dtype=torch.long, device=x.device),
            failed=failed,
            boundary=worst.norm * fraction,
        )

    def _bisect(self, x, y, attacked, attacked_prediction, failed, threshold):
        """``(t, image, prediction)`` at the boundary of each failed sample (``t = 1`` and the worst case otherwise)."""
        change = attacked - x
        low, high = torch.zeros(x.shape[0], device=x.device), torch.ones(x.shape[0], device=x.device)
        view = (-1, *([1] * (x.dim() - 1)))
        for _ in range(self.bisection_steps):
            middle = (low + high) / 2
            logits = self.logits_of(x + middle.view(view) * change)
            ok = self.predicate.score(predict_classes(logits), y, logits.shape[1]) >= threshold
            low, high = torch.where(ok, middle, low), torch.where(ok, high, middle)
        fraction = torch.where(failed, (low + high) / 2, torch.ones_like(low))
        image = x + fraction.view(view) * change
        prediction = predict_classes(self.logits_of(image))
        keep = failed.view(-1, *([1] * (y.dim() - 1)))
        return fraction, image, torch.where(keep, prediction, attacked_prediction)
