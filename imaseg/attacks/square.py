"""A gradient-free attack: random search with localized square perturbations (Square-attack style), adapted
to dense outputs.

The search starts at the clean input. The first query tries a random perturbation that fills the budget
(Linf: ``+-eps`` per voxel; L2: a Gaussian direction on the eps-sphere); every later query redraws one random
square (a cube in 3D) window of the current perturbation: Linf puts ``+-eps`` per channel there, L2 puts a
Gaussian patch that takes all the budget the rest of the perturbation leaves. A candidate is kept for a sample
when it lowers the sample's hard Dice, or keeps it and lowers the mean true-class logit margin (the tie-break
that gives piecewise-constant Dice a direction). The window's area starts at ``p_init`` of the sample and
halves at fixed fractions of the queries, as in the Square attack. Only forward passes are used, so a model
whose gradients are masked (zero, wrong, or non-differentiable) is attacked as any other: the check
``square_vs_gradient`` of ``imaseg evaluate`` compares it with the gradient attacks.

Reference: Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020.
"""

from __future__ import annotations

import math

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.geometry import perturbation_norm, project, scale_to_sphere
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.attacks.result import AttackResult, worst_over_restarts
from imaseg.metrics.dice import sample_dice
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_positive_int

__all__ = ["QUERIES_PER_STEP", "SquareAttack", "build_square"]

QUERIES_PER_STEP = 5
"""Queries of the registered ``square`` kind per configured gradient step (20 steps: 100 forward passes)."""

_HALVINGS = (0.05, 0.1, 0.25, 0.4, 0.6, 0.8)  # fractions of the queries where the window area halves


class SquareAttack(Attack):
    """Random search over square windows, each candidate kept per sample when it lowers that sample's Dice.

    Args:
        queries: forward passes after the clean one (the first tries a full-budget random perturbation).
        p_init: the first windows' share of the sample's voxels, in (0, 1].
        restarts: independent searches; the per-sample worst is kept.
        Others: see :class:`~imaseg.attacks.Attack`.

    Example:
        >>> net = torch.nn.Conv2d(1, 2, 1)
        >>> x, y = torch.rand(2, 1, 8, 8), torch.randint(0, 2, (2, 8, 8))
        >>> result = SquareAttack(net, eps=0.5, queries=4, clip_range=(0.0, 1.0)).run(x, y)
        >>> bool((result.norm <= 0.5 + 1e-5).all()), tuple(result.dice.shape)
        (True, (2,))
    """

    def __init__(self, model, *, queries: int = 100, p_init: float = 0.1, restarts: int = 1, **common) -> None:
        super().__init__(model, **common)
        self.queries = check_positive_int("queries", queries)
        if not 0.0 < float(p_init) <= 1.0:
            raise ValueError(f"`p_init` must be in (0, 1], got {p_init}")
        self.p_init = float(p_init)
        self.restarts = check_positive_int("restarts", restarts)

    def _run(self, x, y, eps, generator) -> AttackResult:
        return worst_over_restarts(self.restarts, lambda: self._search(x, y, eps, generator))

    @torch.no_grad()
    def _measure(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(prediction, dice, margin)``: the margin is the mean over voxels of the true-class logit minus
        the largest other logit (lower: closer to wrong)."""
        logits = self.logits_of(x)
        prediction = predict_classes(logits)
        true = logits.gather(1, y.unsqueeze(1))
        other = logits.scatter(1, y.unsqueeze(1), float("-inf")).amax(1, keepdim=True)
        margin = (true - other).flatten(1).mean(1)
        return prediction, sample_dice(prediction, y, logits.shape[1]), margin

    def _search(self, x, y, eps, generator) -> AttackResult:
        delta = torch.zeros_like(x)
        prediction, dice, margin = self._measure(x, y)
        for query in range(self.queries):
            if query == 0:
                candidate = self._fill(x, eps, generator)
            else:
                candidate = self._redraw_window(delta, eps, self._side(query, x.shape[2:]), generator)
            candidate = self.clip_delta(x, project(candidate, eps, self.norm))
            c_prediction, c_dice, c_margin = self._measure(x + candidate, y)
            better = (c_dice < dice) | ((c_dice == dice) & (c_margin < margin))
            delta = torch.where(_per_sample(better, x), candidate, delta)
            prediction = torch.where(_per_sample(better, prediction), c_prediction, prediction)
            dice, margin = torch.where(better, c_dice, dice), torch.where(better, c_margin, margin)
        source = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return AttackResult(x + delta, dice, perturbation_norm(delta, self.norm), prediction, source=source)

    def _draw(self, shape, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=generator.device).to(device)

    def _fill(self, x: torch.Tensor, eps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = self._draw(x.shape, generator, x.device)
        if self.norm == "linf":
            return noise.sign() * _per_sample(eps, x)
        return scale_to_sphere(noise, eps, "l2")

    def _side(self, query: int, spatial: torch.Size) -> int:
        """The window's side: its volume is ``p`` of the sample, ``p`` halved at each passed fraction."""
        halvings = sum(query >= fraction * self.queries for fraction in _HALVINGS)
        share = self.p_init * 0.5**halvings
        voxels = math.prod(spatial)
        return max(1, min(min(spatial), round((share * voxels) ** (1.0 / len(spatial)))))

    def _window(self, delta: torch.Tensor, side: int, generator: torch.Generator) -> torch.Tensor:
        """A ``(B, 1, *spatial)`` mask: one random ``side``-wide square (cube) per sample."""
        spatial = delta.shape[2:]
        mask = torch.zeros((delta.shape[0], 1, *spatial), device=delta.device)
        device = generator.device
        for b in range(delta.shape[0]):
            starts = [int(torch.randint(0, s - side + 1, (1,), generator=generator, device=device)) for s in spatial]
            window: tuple[int | slice, ...] = (b, slice(None), *(slice(s, s + side) for s in starts))
            mask[window] = 1.0
        return mask

    def _redraw_window(self, delta, eps, side: int, generator: torch.Generator) -> torch.Tensor:
        mask = self._window(delta, side, generator)
        outside = delta * (1 - mask)
        if self.norm == "linf":
            signs = self._draw((delta.shape[0], delta.shape[1], *([1] * (delta.dim() - 2))), generator, delta.device)
            return outside + mask * signs.sign() * _per_sample(eps, delta)
        room = (eps.square() - perturbation_norm(outside, "l2").square()).clamp_min(0).sqrt()
        patch = self._draw(delta.shape, generator, delta.device) * mask
        return outside + scale_to_sphere(patch, room, "l2")


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


@register_attack(
    "square",
    f"random search (Square-attack style, gradient-free): {QUERIES_PER_STEP} x {{steps}} queries of random "
    "square windows, each kept when it lowers the sample's Dice",
    gradient=False,
    uses_steps=True,
    citation="Square Attack: Andriushchenko et al., ECCV 2020",
)
def build_square(model, *, eps, norm: str, settings: AttackSettings) -> SquareAttack:
    """Random search with ``QUERIES_PER_STEP * settings.steps`` queries per restart."""
    return SquareAttack(
        model,
        queries=QUERIES_PER_STEP * settings.steps,
        restarts=settings.restarts,
        eps=eps,
        norm=norm,
        clip_range=settings.clip_range,
        seed=settings.seed,
        autocast_dtype=settings.autocast_dtype,
    )
