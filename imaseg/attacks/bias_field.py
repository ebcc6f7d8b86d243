"""Worst-case MR bias field: a smooth multiplicative intensity field within a relative budget, 2D and 3D.

The field is ``1 + P(r)`` with ``P`` a polynomial of total degree ``<= order`` in the voxel coordinates
``r`` scaled to ``[-1, 1]`` (the low-order model of Van Leemput et al. 1999 that MONAI's ``RandBiasField``
draws at random). The attacked image is ``x * (1 + P)``, clipped to ``clip_range``; one field per
sample, shared by its channels. The budget ``eps`` is the largest relative intensity change over the
sample's voxels, ``max |P| <= eps`` (``eps = 0.1``: every voxel within +/-10 %), so its unit is ``rel``
(attack names ``bias-field-rel``, ``bias-field-random-rel``). Coefficients are projected by scaling
them down until the field fits, which keeps the field's shape.

The model input should be proportional to the MR signal (e.g. scaled to [0, 1]); on z-scored inputs
the field scales intensities about the mean of the normalisation instead of about zero.

:class:`BiasFieldPGD` takes unit-L2 gradient steps on the coefficients of orthonormal polynomials,
projects, and keeps each sample's worst iterate (on a small U-Net, signed steps on raw monomial
coefficients did no better than random fields; these beat 100 random draws); :class:`RandomBiasField` is its baseline: random coefficients at the full budget.
"""

from __future__ import annotations

import itertools

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.geometry import step_direction
from imaseg.attacks.losses import AttackLoss, build_attack_loss
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.attacks.result import AttackResult, keep_worse, worst_over_restarts
from imaseg.attacks.tracking import IterateTracker
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_non_negative, check_positive_int
from imaseg.utils.units import PHYSICAL_UNITS

__all__ = [
    "BiasFieldPGD",
    "RandomBiasField",
    "bias_field",
    "build_bias_field",
    "build_random_bias_field",
    "field_amplitude",
    "polynomial_basis",
    "project_coefficients",
]

_TINY = 1e-12


def polynomial_basis(spatial_shape: tuple[int, ...], order: int, device: torch.device | None = None) -> torch.Tensor:
    """Orthogonal polynomials of total degree ``<= order`` on the voxel grid, ``(K, *spatial)``.

    The monomials of the coordinates scaled to ``[-1, 1]`` (constant, linear, quadratic, ...), orthonormalised
    over the grid (QR, in that order) and scaled to an RMS of 1 each: the same fields, but coefficients whose
    Euclidean norm is the field's RMS, so gradient steps on them are well conditioned.

    >>> basis = polynomial_basis((4, 5), 2)  # 1, 2 linear, 3 quadratic terms
    >>> basis.shape, round(float(basis[3].pow(2).mean()), 4)
    (torch.Size([6, 4, 5]), 1.0)
    """
    axes = [
        torch.linspace(-1.0, 1.0, n, device=device) if n > 1 else torch.zeros(1, device=device) for n in spatial_shape
    ]
    grids = torch.meshgrid(*axes, indexing="ij")
    terms = []
    for degree in range(order + 1):
        for powers in itertools.product(range(degree + 1), repeat=len(spatial_shape)):
            if sum(powers) == degree:
                term = torch.ones(spatial_shape, device=device)
                for grid, power in zip(grids, powers):
                    term = term * grid**power
                terms.append(term)
    monomials = torch.stack(terms).flatten(1)
    q, _ = torch.linalg.qr(monomials.T.double())
    voxels = monomials.shape[1]
    return (q.T * voxels**0.5).float().reshape(len(terms), *spatial_shape)


def _polynomial(coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``P`` per sample, flattened: ``(B, voxels)``."""
    return coefficients @ basis.flatten(1)


def field_amplitude(coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The largest relative intensity change ``max |P|`` of each sample's field, ``(B,)``."""
    return _polynomial(coefficients, basis).abs().amax(dim=1)


def bias_field(coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The multiplicative field ``1 + P``, ``(B, 1, *spatial)``."""
    return 1.0 + _polynomial(coefficients, basis).view(coefficients.shape[0], 1, *basis.shape[1:])


def project_coefficients(coefficients: torch.Tensor, basis: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Scale each sample's coefficients down (never up) so that its field changes intensity by at most ``eps``."""
    factor = (eps / field_amplitude(coefficients, basis).clamp_min(_TINY)).clamp(max=1.0)
    return coefficients * factor[:, None]


def _random_coefficients(
    batch: int, basis: torch.Tensor, amplitude: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Gaussian coefficients scaled so that each field's largest relative change is exactly ``amplitude``."""
    raw = torch.randn(batch, basis.shape[0], generator=generator, device=generator.device).to(basis.device)
    return raw * (amplitude / field_amplitude(raw, basis).clamp_min(_TINY))[:, None]


class _BiasFieldAttack(Attack):
    """Shared by both kinds: the budget unit ``rel``, the field order, and applying a field."""

    def __init__(self, model, *, eps: float | torch.Tensor, order: int = 3, **common) -> None:
        super().__init__(model, eps=eps, norm="linf", **common)
        self.norm = "rel"  # the budget bounds the field's relative change, not the perturbation itself
        self.order = check_positive_int("order", order)

    def _basis(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if eps.numel() and eps.max() >= 1:
            raise ValueError(f"`eps` (max relative intensity change) must be < 1, got {eps.max().item()}")
        return polynomial_basis(tuple(x.shape[2:]), self.order, x.device)

    def _apply(self, x: torch.Tensor, coefficients: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
        return x + self.clip_delta(x, x * (bias_field(coefficients, basis) - 1.0))

    def _result(self, x, y, coefficients, basis, prediction=None, dice=None) -> AttackResult:
        adversarial = self._apply(x, coefficients, basis)
        if prediction is None or dice is None:
            prediction, dice = self.score(adversarial, y)
        return AttackResult(
            adversarial,
            dice,
            field_amplitude(coefficients, basis),
            prediction,
            source=torch.zeros(x.shape[0], dtype=torch.long, device=x.device),
        )


class RandomBiasField(_BiasFieldAttack):
    """Random smooth bias fields at the full budget (the baseline of :class:`BiasFieldPGD`).

    Args:
        eps: largest relative intensity change (``0.2``: +/-20 %), float or ``(B,)``; must be < 1.
        order: total degree of the polynomial field.
        draws: independent fields; each sample keeps its worst (lowest Dice).
        Others: see :class:`~imaseg.attacks.Attack`.
    """

    def __init__(self, model, *, eps: float | torch.Tensor, order: int = 3, draws: int = 1, **common) -> None:
        super().__init__(model, eps=eps, order=order, **common)
        self.draws = check_positive_int("draws", draws)

    def _run(self, x, y, eps, generator) -> AttackResult:
        basis = self._basis(x, eps)
        result = None
        for _ in range(self.draws):
            coefficients = _random_coefficients(x.shape[0], basis, eps, generator)
            draw = self._result(x, y, coefficients, basis)
            result = draw if result is None else keep_worse(result, draw)
        if result is None:  # draws >= 1 (checked in __init__)
            raise RuntimeError("the random bias field made no draw")
        return result


class BiasFieldPGD(_BiasFieldAttack):
    """PGD on the coefficients of a smooth bias field: unit-L2 steps, projection, worst iterate per sample.

    Args:
        eps: largest relative intensity change (``0.2``: +/-20 %), float or ``(B,)``; must be < 1.
        order: total degree of the polynomial field.
        steps: gradient steps.
        alpha_factor: coefficient step (the field's RMS change) as a multiple of ``eps / steps`` (2.5).
        loss: attack loss name or :class:`~imaseg.attacks.losses.AttackLoss`.
        random_start: start from a random field of relative change uniform in ``[0, eps]``.
        restarts: independent random starts; the per-sample worst is kept.
        Others: see :class:`~imaseg.attacks.Attack`.

    Example:
        >>> net = torch.nn.Conv2d(1, 3, 3, padding=1)
        >>> x, y = torch.rand(2, 1, 16, 16), torch.randint(0, 3, (2, 16, 16))
        >>> result = BiasFieldPGD(net, eps=0.1, steps=3, clip_range=(0.0, 1.0)).run(x, y)
        >>> bool((result.norm <= 0.1 + 1e-6).all())
        True
    """

    def __init__(
        self,
        model,
        *,
        eps: float | torch.Tensor,
        order: int = 3,
        steps: int = 20,
        alpha_factor: float = 2.5,
        loss: str | AttackLoss = "ce",
        random_start: bool = True,
        restarts: int = 1,
        **common,
    ) -> None:
        super().__init__(model, eps=eps, order=order, **common)
        self.steps = check_positive_int("steps", steps, minimum=0)
        self.alpha_factor = check_non_negative("alpha_factor", alpha_factor)
        self.loss_fn = build_attack_loss(loss)
        self.random_start = bool(random_start)
        self.restarts = check_positive_int("restarts", restarts)

    def _run(self, x, y, eps, generator) -> AttackResult:
        basis = self._basis(x, eps)
        return worst_over_restarts(self.restarts, lambda: self._path(x, y, eps, basis, generator))

    def _start(self, x, eps, basis, generator) -> torch.Tensor:
        """The first coefficients: a random field of relative change uniform in ``[0, eps]``, or none."""
        batch = x.shape[0]
        if not self.random_start:
            return torch.zeros(batch, basis.shape[0], device=x.device)
        radius = torch.rand(batch, generator=generator, device=generator.device).to(x.device) * eps
        return _random_coefficients(batch, basis, radius, generator)

    def _path(self, x, y, eps, basis, generator) -> AttackResult:
        steps = self.steps
        coefficients = self._start(x, eps, basis, generator)
        alpha = (self.alpha_factor * eps / max(steps, 1))[:, None]
        tracker = IterateTracker(y, lambda c: field_amplitude(c, basis), track=True, record=False, start=coefficients)
        for k in range(steps):
            current = coefficients.clone().requires_grad_(True)
            logits = self.logits_of(self._apply(x, current, basis))
            loss = self.loss_fn(logits, y, step=k, steps=steps, targeted=False).sum()
            (grad,) = torch.autograd.grad(loss, current)
            with torch.no_grad():
                tracker(k, coefficients, predict_classes(logits.detach()), logits.shape[1])
                step = coefficients + alpha * step_direction(grad, "l2")
                coefficients = project_coefficients(step, basis, eps)
        with torch.no_grad():
            logits = self.logits_of(self._apply(x, coefficients, basis))
            tracker(steps, coefficients, predict_classes(logits), logits.shape[1])
        assert tracker.best_delta is not None  # set by the final observation
        return self._result(x, y, tracker.best_delta, basis, tracker.best_prediction, tracker.best_dice)


_DESCRIPTION = (
    "the intensity varies smoothly (a polynomial field of degree 3, like an uncorrected MR coil bias) by at most "
    "eps times the local intensity anywhere in the field of view (eps 0.2: up to +/-20 %)"
)
_UNITS: dict = {
    "norms": ("rel",),
    "unit": PHYSICAL_UNITS["rel"],
    "budgets": (0.0, 0.05, 0.1, 0.2, 0.3),
    "citation": "Bias field model: Van Leemput et al., IEEE TMI 1999",
}


@register_attack(
    "bias-field",
    f"worst-case bias field: {_DESCRIPTION}; {{steps}}-step PGD on the field's coefficients, loss ce "
    "(worst iterate per sample), {restarts} restart(s)",
    **_UNITS,
)
def build_bias_field(model, *, eps, norm: str, settings: AttackSettings) -> BiasFieldPGD:
    """PGD on a smooth bias field (``settings.step_size``, in model-input units, does not apply)."""
    return BiasFieldPGD(model, steps=settings.steps, restarts=settings.restarts, **settings.base_arguments(eps))


@register_attack(
    "bias-field-random",
    f"random bias field (baseline): {_DESCRIPTION}, drawn at random at the full budget",
    gradient=False,
    uses_steps=False,
    **_UNITS,
)
def build_random_bias_field(model, *, eps, norm: str, settings: AttackSettings) -> RandomBiasField:
    """Random smooth bias fields at the full budget, ``settings.noise_draws`` draws (worst kept)."""
    return RandomBiasField(model, draws=settings.noise_draws, **settings.base_arguments(eps))
