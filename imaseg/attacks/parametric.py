"""Attacks over an artefact's few parameters within a physical budget: one PGD and one random baseline for all.

A kind subclasses :class:`ParametricAttack` and says how its parameters change the image (``_change``), how
much of the budget they use (``_amount``), how to bring them back into the budget (``_project``) and how to
draw them at random at a given amount (``_draw``). Its parameters are in the budget's units (or close to
them), so that one step size, ``alpha_factor * eps / steps``, fits every kind.

With ``optimise=True`` the attack takes unit-L2 (for a box budget: signed) gradient steps on the
parameters (``torch.autograd.grad`` of the attack loss), projects after each step (the kinds project
exactly, Euclidean), keeps each sample's worst iterate (lowest Dice) and the worst over ``restarts`` random
starts, like :class:`~imaseg.attacks.bias_field.BiasFieldPGD`. With ``optimise=False`` it is the baseline of
the same budget: ``draws`` random parameter sets at the full budget, each sample keeping its worst. The
change is clipped to ``clip_range``; the inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.geometry import step_direction
from imaseg.attacks.losses import AttackLoss, build_attack_loss
from imaseg.attacks.result import AttackResult, worst_over_restarts
from imaseg.attacks.tracking import IterateTracker
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_non_negative, check_positive_int

__all__ = ["ParametricAttack"]


class ParametricAttack(Attack):
    """Base of the physical kinds parameterised by a few numbers per sample (see the module docstring).

    Args:
        eps: the budget in the kind's unit (:attr:`unit`), float or ``(B,)``.
        optimise: PGD on the parameters (``True``) or random parameters at the full budget (the baseline).
        steps: gradient steps (``optimise=True``).
        alpha_factor: parameter step as a multiple of ``eps / steps`` (2.5).
        loss: attack loss name or :class:`~imaseg.attacks.losses.AttackLoss`.
        random_start: without a scan, start from random parameters using a budget uniform in ``[0, eps]``.
        restarts: independent random starts; the per-sample worst is kept.
        scan: parameter sets at the full budget tried before the steps (forward passes only; random draws unless
            the kind spreads them, see ``_scan_draws``): each sample starts from its draw of highest loss, and the
            draws count as iterates (0: a random start inside the budget). Low-dimensional artefacts have several
            local optima, which a scan finds and steps miss.
        draws: random draws, the per-sample worst kept (``optimise=False``).
        Others: see :class:`~imaseg.attacks.Attack`.
    """

    unit: ClassVar[str] = ""
    """The budget's unit: the norm its attack names end in, a key of ``PHYSICAL_UNITS``."""
    step_norm: ClassVar[str] = "l2"
    """The geometry of the gradient steps: unit-L2 (``"l2"``) or signed (``"linf"``, for a box budget)."""

    def __init__(
        self,
        model,
        *,
        eps: float | torch.Tensor,
        optimise: bool = True,
        steps: int = 20,
        alpha_factor: float = 2.5,
        loss: str | AttackLoss = "ce",
        random_start: bool = True,
        restarts: int = 1,
        scan: int = 0,
        draws: int = 1,
        **common,
    ) -> None:
        super().__init__(model, eps=eps, norm="linf", **common)
        self.norm = self.unit  # the budget is the artefact's own physical measure, not a norm of the change
        self.optimise = bool(optimise)
        self.steps = check_positive_int("steps", steps, minimum=0)
        self.alpha_factor = check_non_negative("alpha_factor", alpha_factor)
        self.loss_fn = build_attack_loss(loss)
        self.random_start = bool(random_start)
        self.restarts = check_positive_int("restarts", restarts)
        self.scan = check_positive_int("scan", scan, minimum=0)
        self.draws = check_positive_int("draws", draws)

    # ---- what a kind defines -----------------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor, eps: torch.Tensor) -> Any:
        """Check the budget against the batch and return what the other methods share (a mask, a geometry)."""
        return None

    def _change(self, x: torch.Tensor, params: torch.Tensor, context: Any) -> torch.Tensor:
        """The change of the image that ``params`` make, before clipping, ``(B, C, *spatial)``."""
        raise NotImplementedError

    def _amount(self, params: torch.Tensor, context: Any) -> torch.Tensor:
        """The budget ``params`` use, ``(B,)``."""
        raise NotImplementedError

    def _project(self, params: torch.Tensor, eps: torch.Tensor, context: Any) -> torch.Tensor:
        """``params`` brought back into the budget ``eps`` (``(B,)``)."""
        raise NotImplementedError

    def _draw(self, x: torch.Tensor, amount: torch.Tensor, context: Any, generator: torch.Generator) -> torch.Tensor:
        """Random parameters using exactly ``amount`` (``(B,)``) of the budget."""
        raise NotImplementedError

    def _realised(self, x: torch.Tensor, delta: torch.Tensor, params: torch.Tensor, context: Any) -> torch.Tensor:
        """The budget the clipped change ``delta`` used, ``(B,)`` (default: that of the parameters)."""
        return self._amount(params, context)

    def _scan_draws(
        self, x: torch.Tensor, eps: torch.Tensor, context: Any, generator: torch.Generator
    ) -> Iterator[torch.Tensor]:
        """The ``scan`` parameter sets tried before the steps (default: random draws at the full budget)."""
        for _ in range(self.scan):
            yield self._draw(x, eps, context, generator)

    # ---- the shared attack -------------------------------------------------------------------------------
    def attacked(self, x: torch.Tensor, params: torch.Tensor, context: Any) -> torch.Tensor:
        """``x`` changed by ``params``, clipped to ``clip_range``."""
        return x + self.clip_delta(x, self._change(x, params, context))

    def _run(self, x, y, eps, generator) -> AttackResult:
        context = self._prepare(x, eps)
        if self.optimise:
            return worst_over_restarts(self.restarts, lambda: self._path(x, y, eps, context, generator))
        return worst_over_restarts(
            self.draws, lambda: self._result(x, y, self._draw(x, eps, context, generator), context)
        )

    def _result(self, x, y, params, context, prediction=None, dice=None) -> AttackResult:
        with torch.no_grad():
            adversarial = self.attacked(x, params, context)
            realised = self._realised(x, adversarial - x, params, context)
        if prediction is None or dice is None:
            prediction, dice = self.score(adversarial, y)
        source = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return AttackResult(adversarial, dice, realised, prediction, source=source)

    def _start(self, x, y, eps, context, generator, tracker: IterateTracker) -> torch.Tensor:
        """The first iterate: the highest-loss of ``scan`` draws at the full budget (each observed), else a draw
        using a budget uniform in ``[0, eps]`` (``random_start``) or none."""
        if not self.scan:
            fraction = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device)
            return self._draw(x, fraction * eps if self.random_start else torch.zeros_like(eps), context, generator)
        best, best_loss = None, None
        for params in self._scan_draws(x, eps, context, generator):
            logits = self.logits_of(self.attacked(x, params, context))
            loss = self.loss_fn(logits, y, step=0, steps=self.steps, targeted=False)
            tracker(0, params, predict_classes(logits), logits.shape[1])
            if best is None or best_loss is None:
                best, best_loss = params, loss
                continue
            higher = loss > best_loss
            pick = higher.view(-1, *([1] * (params.dim() - 1)))
            best, best_loss = torch.where(pick, params, best), torch.where(higher, loss, best_loss)
        assert best is not None  # scan >= 1
        return best

    def _path(self, x, y, eps, context, generator) -> AttackResult:
        steps = self.steps
        alpha = self.alpha_factor * eps / max(steps, 1)
        tracker = IterateTracker(y, lambda p: self._amount(p, context), track=True, record=False)
        with torch.no_grad():
            params = self._start(x, y, eps, context, generator, tracker)
        for k in range(steps):
            current = params.clone().requires_grad_(True)
            logits = self.logits_of(self.attacked(x, current, context))
            loss = self.loss_fn(logits, y, step=k, steps=steps, targeted=False).sum()
            (grad,) = torch.autograd.grad(loss, current)
            with torch.no_grad():
                tracker(k, params, predict_classes(logits.detach()), logits.shape[1])
                step = step_direction(grad, self.step_norm) * alpha.view(-1, *([1] * (grad.dim() - 1)))
                params = self._project(params + step, eps, context)
        with torch.no_grad():
            logits = self.logits_of(self.attacked(x, params, context))
            tracker(steps, params, predict_classes(logits), logits.shape[1])
        assert tracker.best_delta is not None  # set by the final observation
        return self._result(x, y, tracker.best_delta, context, tracker.best_prediction, tracker.best_dice)
