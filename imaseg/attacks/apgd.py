"""Auto-PGD (Croce & Hein, ICML 2020) for segmentation: a step size that adapts per sample, and momentum.

The step starts at ``2 eps``. At checkpoints ``w_j`` of the path (at 22%, then ever shorter intervals, of
the steps) a sample's step is halved, and the sample restarts from its best point so far (highest loss),
when its loss rose on fewer than ``rho`` of the steps since the last checkpoint, or when neither its step
nor its best loss changed since then. Each step moves by ``momentum`` towards the projected gradient step
and keeps ``1 - momentum`` of the previous move. Unlike PGD with a fixed step, no step size needs tuning
per budget, model or norm, which is why a fixed-step PGD can look robust where APGD is not.

As :class:`~imaseg.attacks.PGD`, the prediction at every iterate is scored (hard Dice) and each sample
keeps its worst iterate, so more steps never end better for the model; restarts keep the per-sample worst.
"""

from __future__ import annotations

import math

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.geometry import project, random_in_ball, step_direction
from imaseg.attacks.losses import AttackLoss, build_attack_loss
from imaseg.attacks.pgd import FLIP_START
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.attacks.result import AttackResult, worst_over_restarts
from imaseg.attacks.tracking import IterateTracker
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_positive_int, check_probability

__all__ = ["APGD", "apgd_checkpoints", "build_apgd_dice", "build_apgd_dlr"]


def apgd_checkpoints(steps: int) -> list[int]:
    """The iterations where step sizes are reconsidered: ``p_0 = 0``, ``p_1 = 0.22``,
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, as iteration indices ``ceil(p_j * steps)``.

    >>> apgd_checkpoints(100)
    [22, 41, 57, 70, 80, 87, 93, 99]
    """
    fractions = [0.0, 0.22]
    while fractions[-1] < 1:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    points = sorted({math.ceil(p * steps - 1e-9) for p in fractions[1:] if p < 1})
    return [p for p in points if 0 < p < steps]


class APGD(Attack):
    """APGD for dense outputs, L2 or Linf, per-sample budgets, 2D and 3D.

    Args:
        model, eps, norm, clip_range, seed, generator, autocast_dtype: see :class:`~imaseg.attacks.Attack`.
        steps: gradient steps.
        loss: attack loss name (``dlr``, ``dice``, ``ce``, ...) or an :class:`~imaseg.attacks.losses.AttackLoss`.
        rho: fraction of steps since the last checkpoint on which the loss must have risen to keep the step.
        momentum: weight of the new projected step (Croce & Hein: 0.75).
        restarts: independent random starts; the per-sample worst result is kept.
        record_flips: record per-voxel flip norms along the path (see :class:`~imaseg.attacks.AttackResult`).

    Example:
        >>> import torch
        >>> net = torch.nn.Conv2d(1, 3, 3, padding=1)
        >>> x, y = torch.rand(2, 1, 8, 8), torch.randint(0, 3, (2, 8, 8))
        >>> adv = APGD(net, eps=0.5, steps=5, loss="dlr", clip_range=(0.0, 1.0))(x, y)
        >>> bool(((adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all())
        True
    """

    def __init__(
        self,
        model,
        *,
        eps: float | torch.Tensor,
        norm: str = "l2",
        steps: int = 20,
        loss: str | AttackLoss = "dlr",
        rho: float = 0.75,
        momentum: float = 0.75,
        restarts: int = 1,
        record_flips: bool = False,
        clip_range: tuple[float, float] | None = None,
        seed: int | None = 0,
        generator: torch.Generator | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            model,
            eps=eps,
            norm=norm,
            clip_range=clip_range,
            seed=seed,
            generator=generator,
            autocast_dtype=autocast_dtype,
        )
        self.steps = check_positive_int("steps", steps)
        self.loss_fn = build_attack_loss(loss)
        self.rho = check_probability("rho", rho)
        self.momentum = check_probability("momentum", momentum)
        self.restarts = check_positive_int("restarts", restarts)
        self.record_flips = bool(record_flips)

    def _run(self, x, y, eps, generator) -> AttackResult:
        return worst_over_restarts(self.restarts, lambda: self._path(x, y, eps, generator))

    def _loss_and_grad(self, x: torch.Tensor, delta: torch.Tensor, y: torch.Tensor, k: int):
        current = (x + delta).requires_grad_(True)
        logits = self.logits_of(current)
        loss = self.loss_fn(logits, y, step=k, steps=self.steps)
        (grad,) = torch.autograd.grad(loss.sum(), current)
        return loss.detach(), grad, logits.detach()

    def _path(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> AttackResult:
        view = (-1, *([1] * (x.dim() - 1)))
        radius = eps * (FLIP_START if self.record_flips else 1.0)  # recorded paths start near x (see PGD)
        delta = self.clip_delta(x, random_in_ball(x.shape, radius, self.norm, generator).to(x.device))
        clean = self.score(x, y)[0] if self.record_flips else None
        tracker = IterateTracker(y, self._norm_of, track=True, record=self.record_flips, clean_prediction=clean)
        state = _StepState(eps, delta)
        checkpoints = set(apgd_checkpoints(self.steps))
        previous = delta
        for k in range(self.steps):
            loss, grad, logits = self._loss_and_grad(x, delta, y, k)
            with torch.no_grad():
                tracker(k, delta, predict_classes(logits), logits.shape[1])
                state.observe(loss, delta, grad)
                if k in checkpoints:
                    reset = state.checkpoint(k, self.rho)
                    delta = torch.where(reset.view(view), state.best_delta, delta)
                    grad = torch.where(reset.view(view), state.best_grad, grad)
                    previous = torch.where(reset.view(view), delta, previous)
                step = state.eta.view(view) * step_direction(grad, self.norm)
                z = self.clip_delta(x, project(delta + step, eps, self.norm))
                moved = z if k == 0 else delta + self.momentum * (z - delta) + (1 - self.momentum) * (delta - previous)
                previous, delta = delta, self.clip_delta(x, project(moved, eps, self.norm))
        with torch.no_grad():
            logits = self.logits_of(x + delta)
            tracker(self.steps, delta, predict_classes(logits), logits.shape[1])
        best = tracker.best_delta if tracker.best_delta is not None else delta
        return AttackResult(
            adversarial=x + best,
            dice=tracker.best_dice,
            norm=self._norm_of(best),
            prediction=tracker.best_prediction,
            flip_radius=tracker.flip_radius,
            flip_step=tracker.flip_step,
            source=torch.zeros(x.shape[0], dtype=torch.long, device=x.device),
        )


class _StepState:
    """Per-sample step sizes and the bookkeeping of APGD's checkpoints."""

    def __init__(self, eps: torch.Tensor, delta: torch.Tensor) -> None:
        self.eta = 2 * eps.clone()
        self.best_loss = torch.full_like(eps, -float("inf"))
        self.best_delta = delta.clone()
        self.best_grad = torch.zeros_like(delta)
        self.previous_loss: torch.Tensor | None = None
        self.rises = torch.zeros_like(eps)
        self.last_checkpoint = 0
        self.eta_at_checkpoint = self.eta.clone()
        self.best_at_checkpoint = self.best_loss.clone()

    def observe(self, loss: torch.Tensor, delta: torch.Tensor, grad: torch.Tensor) -> None:
        view = (-1, *([1] * (delta.dim() - 1)))
        if self.previous_loss is not None:
            self.rises += (loss > self.previous_loss).float()
        self.previous_loss = loss
        improved = loss > self.best_loss
        self.best_loss = torch.where(improved, loss, self.best_loss)
        self.best_delta = torch.where(improved.view(view), delta, self.best_delta)
        self.best_grad = torch.where(improved.view(view), grad, self.best_grad)

    def checkpoint(self, k: int, rho: float) -> torch.Tensor:
        """Halve the step of the samples that stalled; returns which ones restart from their best point."""
        too_few_rises = self.rises < rho * (k - self.last_checkpoint)
        unchanged = (self.eta == self.eta_at_checkpoint) & (self.best_loss == self.best_at_checkpoint)
        reset = too_few_rises | unchanged
        self.eta = torch.where(reset, self.eta / 2, self.eta)
        self.rises.zero_()
        self.last_checkpoint = k
        self.eta_at_checkpoint, self.best_at_checkpoint = self.eta.clone(), self.best_loss.clone()
        return reset


def _apgd(model, eps, norm: str, settings: AttackSettings, loss: str) -> APGD:
    return APGD(
        model,
        eps=eps,
        norm=norm,
        steps=settings.steps,
        loss=loss,
        restarts=settings.restarts,
        record_flips=settings.record_flips,
        clip_range=settings.clip_range,
        seed=settings.seed,
        autocast_dtype=settings.autocast_dtype,
    )


@register_attack(
    "apgd-dlr",
    "{steps}-step APGD (adaptive step, momentum), loss dlr, {restarts} restart(s)",
    records_flips=True,
    citation="APGD and DLR: Croce & Hein, ICML 2020",
)
def build_apgd_dlr(model, *, eps, norm: str, settings: AttackSettings) -> APGD:
    """APGD on the difference-of-logits ratio."""
    return _apgd(model, eps, norm, settings, "dlr")


@register_attack(
    "apgd-dice",
    "{steps}-step APGD (adaptive step, momentum), loss dice, {restarts} restart(s)",
    citation="APGD: Croce & Hein, ICML 2020",
)
def build_apgd_dice(model, *, eps, norm: str, settings: AttackSettings) -> APGD:
    """APGD on the per-sample soft Dice."""
    return _apgd(model, eps, norm, settings, "dice")


_SEA_LOSSES = {  # kind -> (loss, what it optimises), the losses of SEA's segmentation ensemble (Croce et al., 2024)
    "apgd-balanced-ce": ("balanced-ce", "class-balanced cross entropy"),
    "apgd-masked-ce": ("masked-ce", "cross entropy over the voxels still correct"),
    "apgd-js": ("js", "Jensen-Shannon divergence to the ground truth"),
}


def _apgd_builder(loss: str):
    def build(model, *, eps, norm: str, settings: AttackSettings) -> APGD:
        return _apgd(model, eps, norm, settings, loss)

    build.__doc__ = f"APGD on the {loss} attack loss."
    return build


for _kind, (_loss, _what) in _SEA_LOSSES.items():
    register_attack(
        _kind,
        f"{{steps}}-step APGD (adaptive step, momentum), loss {_what}, {{restarts}} restart(s)",
        records_flips=True,
        citation="APGD: Croce & Hein, ICML 2020; the loss as in SEA (Croce et al., 2024)",
    )(_apgd_builder(_loss))
