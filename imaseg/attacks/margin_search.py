"""Margin search: L2 PGD inside each sample's own radius that stops at the sample's decision boundary.

This is the inner attack of IMA (Ma & Liang, arXiv 2005.09147), as the official segmentation code runs
it: PGD within radius ``E_i`` from a random start of radius ``max(E_i - delta, delta)``, step
``alpha_factor * E_i / steps`` (0.2 E_i for 4 / 20); after every iterate a *predicate* says whether
the sample still counts as correctly segmented (hard Dice >= ``tau``). At the first failure the
boundary is bracketed by the last correct and the first failing iterate and located by bisection;
a sample that never fails returns its final iterate (on or near the sphere of radius ``E_i``).

With ``bisection_steps=0`` the boundary *norm* is instead interpolated on the Dice-vs-norm line between
the bracketing iterates (no extra forward passes) and the final iterate is returned; voxel-level IMA
uses that, together with the per-voxel flip record.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.geometry import project, random_in_ball, scale_to_sphere
from imaseg.attacks.losses import AttackLoss, build_attack_loss
from imaseg.attacks.path import walk
from imaseg.attacks.result import AttackResult
from imaseg.attacks.tracking import FlipRecord
from imaseg.metrics.dice import sample_dice
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_choice, check_non_negative, check_positive_int, check_probability

__all__ = ["EMPTY_POLICIES", "DicePredicate", "MarginResult", "MarginSearch"]

EMPTY_POLICIES = ("tolerance", "fail")


class DicePredicate:
    """ "Still correct" test per sample: hard Dice over foreground classes >= ``tau``.

    Args:
        tau: Dice threshold (0.6 in the released IMA code; 0.7 when its published models were trained).
        reduction: how classes combine: ``"max"`` (the official code: one good structure is enough),
            ``"mean"`` or ``"min"`` (every structure must hold). Classes absent from both prediction
            and ground truth do not count.
        empty_tolerance: for samples whose ground truth has no foreground (Dice undefined): correct
            while at most this fraction of voxels is predicted as foreground. The official code lets
            such slices fail at once, so their margins collapse to ~0 and they never get robust to
            false-positive blobs; a small area tolerance gives them a real, finite margin instead.
        empty_policy: ``"tolerance"`` (the above) or ``"fail"`` (the official code: such samples fail at
            once, whatever is predicted).
        relative: the threshold is ``tau`` times the sample's clean score (``Dice_adv >= tau * Dice_clean``)
            instead of ``tau`` itself.
    """

    def __init__(
        self,
        tau: float = 0.6,
        reduction: str = "max",
        empty_tolerance: float = 0.002,
        empty_policy: str = "tolerance",
        *,
        relative: bool = False,
    ) -> None:
        self.tau = check_probability("tau", tau)
        self.reduction = check_choice("dice_reduction", reduction, ("max", "mean", "min"))
        self.empty_tolerance = check_probability("empty_tolerance", empty_tolerance)
        self.empty_policy = check_choice("empty_policy", empty_policy, EMPTY_POLICIES)
        self.relative = bool(relative)

    def threshold(self, clean_score: torch.Tensor) -> torch.Tensor:
        """Per-sample score below which a sample fails: ``tau``, or ``tau * clean_score`` when relative.

        >>> DicePredicate(0.8, relative=True).threshold(torch.tensor([1.0, 0.5])).tolist()
        [0.800000011920929, 0.4000000059604645]
        """
        if self.relative:
            return self.tau * clean_score
        return torch.full_like(clean_score, self.tau)

    def score(self, prediction: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Per-sample Dice under the reduction (for empty ground truth: 1 - FP fraction / tolerance)."""
        dice = sample_dice(prediction, label, num_classes, reduction=self.reduction)
        empty = (label.flatten(1) > 0).sum(1) == 0
        if empty.any() and self.empty_policy == "fail":  # the official code: an empty slice fails at once
            return torch.where(empty, torch.zeros_like(dice), dice)
        if empty.any():
            fp_fraction = (prediction.flatten(1) > 0).float().mean(1)
            tolerance = max(self.empty_tolerance, 1e-12)
            # tau + (1 - tau) * (1 - f / tol): f / tol is exactly 1 at the tolerance, so the score is exactly tau
            # there (1 - (1 - tau) * f / tol rounds below tau for e.g. 5 of 100 voxels at tolerance 0.05)
            empty_score = self.tau + (1 - self.tau) * (1 - fp_fraction / tolerance)
            dice = torch.where(empty, empty_score, dice)
        return dice

    def __call__(self, prediction: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
        return self.score(prediction, label, num_classes) >= self.tau


@dataclass
class MarginResult(AttackResult):
    """An :class:`AttackResult` plus ``failed`` (``(B,)`` bool: the predicate failed within the
    radius) and ``boundary`` (``(B,)`` norm of the boundary estimate; the final norm if not failed)."""

    failed: torch.Tensor | None = None
    boundary: torch.Tensor | None = None


class MarginSearch(Attack):
    """L2 PGD within per-sample radii ``eps`` that locates each sample's Dice = tau boundary.

    Args:
        model, clip_range, seed, generator, autocast_dtype: see :class:`~imaseg.attacks.Attack`.
        eps: the per-sample radii (IMA margins), usually given per call.
        delta: IMA's margin step; the random start has radius ``max(eps - delta, delta)``
            (clamped to ``eps``).
        steps: PGD steps (20 in the official code).
        alpha_factor: step size as a multiple of ``eps / steps`` (4 -> 0.2 eps for 20 steps).
        loss: the attack loss (the official code: per-sample Dice + CE).
        predicate: the :class:`DicePredicate`.
        bisection_steps: bisection steps between the bracketing iterates (10); 0 to interpolate.
        record_flips: also record per-voxel flip radii along the path.
        start_fraction: ``None`` for the official random start of radius ``max(eps - delta, delta)``; a
            fraction ``f`` for a start of radius ``f * eps``, so the path walks outwards from the clean
            input and the norm at the first failure (and each voxel's flip radius) measures a distance
            to the boundary rather than the start radius.
    """

    def __init__(
        self,
        model,
        *,
        eps=0.0,
        delta: float = 0.25,
        steps: int = 20,
        alpha_factor: float = 4.0,
        loss: str | AttackLoss = "dice-ce",
        predicate: DicePredicate | None = None,
        bisection_steps: int = 10,
        record_flips: bool = False,
        start_fraction: float | None = None,
        **common,
    ) -> None:
        super().__init__(model, eps=eps, norm="l2", **common)
        self.delta = check_non_negative("delta", delta)
        self.steps = check_positive_int("steps", steps)
        self.alpha_factor = check_non_negative("alpha_factor", alpha_factor)
        self.loss_fn = build_attack_loss(loss)
        self.predicate = predicate or DicePredicate()
        self.bisection_steps = check_positive_int("bisection_steps", bisection_steps, minimum=0)
        self.record_flips = bool(record_flips)
        self.start_fraction = None if start_fraction is None else check_probability("start_fraction", start_fraction)

    def score(self, x, y):
        with torch.no_grad():
            logits = self.logits_of(x)
        self._num_classes = logits.shape[1]
        prediction = predict_classes(logits)
        return prediction, sample_dice(prediction, y, self._num_classes)

    def _start(self, x: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The random start: radius ``max(eps - delta, delta)`` (official) or ``start_fraction * eps``."""
        if self.start_fraction is None:
            start_radius = torch.minimum(torch.clamp(eps - self.delta, min=self.delta), eps)
        else:
            start_radius = self.start_fraction * eps
        delta = scale_to_sphere(
            random_in_ball(x.shape, torch.ones_like(eps), "l2", generator).to(x.device), start_radius, "l2"
        )
        return self.clip_delta(x, project(delta, eps, "l2"))

    def _run(self, x, y, eps, generator) -> MarginResult:
        shape = (-1, *([1] * (x.dim() - 1)))
        delta = self._start(x, eps, generator)
        alpha = (self.alpha_factor * eps / self.steps).view(shape)

        batch = x.shape[0]
        failed = torch.zeros(batch, dtype=torch.bool, device=x.device)
        # The clean input brackets the boundary from below: if the random start already fails, the
        # boundary lies between x and the start (bisection then lands near x when x itself fails).
        last_ok, first_bad = torch.zeros_like(delta), delta.clone()
        ok_score = torch.ones(batch, device=x.device)
        bad_score = torch.zeros(batch, device=x.device)
        clean_pred = None
        if self.record_flips or not self.bisection_steps or self.predicate.relative:
            clean_pred, _ = self.score(x, y)
            with torch.no_grad():
                ok_score = self.predicate.score(clean_pred, y, self._num_classes)
        threshold = self.predicate.threshold(ok_score)
        flips = FlipRecord(self._norm_of, clean_pred) if self.record_flips else None
        pred = None

        def observe(k: int, current: torch.Tensor, prediction: torch.Tensor, num_classes: int) -> None:
            nonlocal failed, last_ok, first_bad, ok_score, bad_score
            score = self.predicate.score(prediction, y, num_classes)
            bad_now = (score < threshold) & ~failed
            still_ok = ~failed & ~bad_now
            view = still_ok.view(shape)
            last_ok = torch.where(view, current, last_ok)
            ok_score = torch.where(still_ok, score, ok_score)
            first_bad = torch.where(bad_now.view(shape), current, first_bad)
            bad_score = torch.where(bad_now, score, bad_score)
            failed = failed | bad_now
            if flips is not None:
                flips.observe(k, current, prediction)

        delta = walk(
            self,
            x,
            delta,
            eps,
            alpha,
            self.steps,
            lambda logits, k: self.loss_fn(logits, y, step=k, steps=self.steps),
            observe=observe,
        )
        with torch.no_grad():
            logits = self.logits_of(x + delta)
            pred = predict_classes(logits)
            observe(self.steps, delta, pred, logits.shape[1])
            num_classes = logits.shape[1]
            final = delta
            if self.bisection_steps and failed.any():
                final, pred = self._bisect(x, y, last_ok, first_bad, failed, delta, pred, num_classes, threshold)
                boundary = self._norm_of(final)
            else:
                boundary = self._interpolate(last_ok, first_bad, ok_score, bad_score, failed, delta, threshold)
        return MarginResult(
            adversarial=x + final,
            dice=sample_dice(pred, y, num_classes),
            norm=self._norm_of(final),
            prediction=pred,
            flip_radius=flips.radius if flips is not None else None,
            flip_step=flips.step if flips is not None else None,
            source=torch.zeros(batch, dtype=torch.long, device=x.device),
            failed=failed,
            boundary=boundary,
        )

    def _interpolate(self, last_ok, first_bad, ok_score, bad_score, failed, final, threshold) -> torch.Tensor:
        """Boundary norm by linear interpolation of the score between the bracketing iterates; a clean
        input that already fails (score below tau) puts the boundary at 0; survivors keep their final norm."""
        ok_norm, bad_norm = self._norm_of(last_ok), self._norm_of(first_bad)
        fraction = ((ok_score - threshold) / (ok_score - bad_score).clamp_min(1e-6)).clamp(0, 1)
        return torch.where(failed, ok_norm + fraction * (bad_norm - ok_norm), self._norm_of(final))

    def _bisect(self, x, y, low, high, failed, final, final_pred, num_classes, threshold):
        """Bisection on [last correct, first failing] for the failed samples; others keep ``final``."""
        view = failed.view(-1, *([1] * (x.dim() - 1)))
        pred = final_pred
        for _ in range(self.bisection_steps):
            middle = (low + high) / 2
            pred = predict_classes(self.logits_of(x + middle))
            ok = (self.predicate.score(pred, y, num_classes) >= threshold).view_as(view)
            low = torch.where(ok, middle, low)
            high = torch.where(ok, high, middle)
        boundary = (low + high) / 2
        pred_boundary = predict_classes(self.logits_of(x + boundary))
        chosen = torch.where(view, boundary, final)
        chosen_pred = torch.where(failed.view(-1, *([1] * (y.dim() - 1))), pred_boundary, final_pred)
        return chosen, chosen_pred
