"""Worst-case CT intensity change: a global HU shift and a contrast (window) change within a stated HU.

Model: the CT numbers of a sample change by an affine function of themselves, ``HU' = HU + b + (g - 1) HU``
(a calibration offset ``b`` and a gain ``g``, i.e. a shift and a change of the window's width), the same for
every voxel of the sample. It is parameterised by what it does at the sample's extremes, both in HU: ``u_lo``
the change of its darkest voxel and ``u_hi`` that of its brightest, linear in HU in between (any shift and
gain is one such pair). The model input ``x`` is linear in HU with ``hu_per_unit`` HU per input unit (the
width of the preprocessing window onto ``[0, 1]``; default 1400, ``imaseg preprocess``'s default window
-1000..400 HU), so the attacked input is ``x + change / hu_per_unit``, clipped to ``clip_range``.

The budget ``eps`` is the largest change of any voxel's CT number, in HU: ``max(|u_lo|, |u_hi|) <= eps``
(the change is affine in HU, so it is largest at the darkest or the brightest voxel). The budget is a box in
the parameters, so PGD takes signed steps and clips them. Unit ``hu``, attack names ``ct-intensity-hu`` and
``ct-intensity-random-hu``. The realised budget in the result is the largest change of the clipped input,
in HU.
"""

from __future__ import annotations

import torch

from imaseg.attacks.parametric import ParametricAttack
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.utils.units import PHYSICAL_UNITS

__all__ = [
    "CTIntensity",
    "build_ct_intensity",
    "build_random_ct_intensity",
    "hu_change",
    "intensity_rank",
]

_TINY = 1e-12
DEFAULT_HU_PER_UNIT = 1400.0  # imaseg preprocess's CT window -1000..400 HU onto [0, 1]


def intensity_rank(x: torch.Tensor) -> torch.Tensor:
    """Where each voxel lies between its sample's darkest (0) and brightest (1) voxel, ``(B, C, *spatial)``
    (0 everywhere in a constant sample).

    >>> intensity_rank(torch.tensor([[[[1.0, 2.0, 5.0]]]])).flatten().tolist()
    [0.0, 0.25, 1.0]
    """
    flat = x.flatten(1)
    view = (-1, *([1] * (x.dim() - 1)))
    low, high = flat.amin(dim=1).view(view), flat.amax(dim=1).view(view)
    return (x - low) / (high - low).clamp_min(_TINY)


def hu_change(params: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """The change of every voxel's CT number in HU, ``u_lo + (u_hi - u_lo) * rank``, for ``params`` ``(B, 2)``
    ``= (u_lo, u_hi)`` and the voxels' :func:`intensity_rank`."""
    view = (-1, *([1] * (rank.dim() - 1)))
    low, high = params[:, 0].view(view), params[:, 1].view(view)
    return low + (high - low) * rank


class CTIntensity(ParametricAttack):
    """A global HU shift and contrast change of at most ``eps`` HU at any voxel: PGD or random (the baseline).

    Args:
        eps: largest change of any voxel's CT number in HU, float or ``(B,)``.
        hu_per_unit: HU per model-input unit (the window width when the window maps onto ``[0, 1]``).
        scan: random draws tried before the steps (the box has four corners, the loss a maximum at one).
        Others: see :class:`~imaseg.attacks.parametric.ParametricAttack`.

    Example:
        >>> net = torch.nn.Conv2d(1, 3, 3, padding=1)
        >>> x, y = torch.rand(2, 1, 16, 16), torch.randint(0, 3, (2, 16, 16))
        >>> result = CTIntensity(net, eps=20.0, optimise=False).run(x, y)  # every voxel within +/-20 HU
        >>> [round(v, 2) for v in result.norm.tolist()]
        [20.0, 20.0]
    """

    unit = "hu"
    step_norm = "linf"

    def __init__(
        self, model, *, eps: float | torch.Tensor, hu_per_unit: float = DEFAULT_HU_PER_UNIT, scan: int = 10, **options
    ) -> None:
        super().__init__(model, eps=eps, scan=scan, **options)
        if not float(hu_per_unit) > 0 or float(hu_per_unit) == float("inf"):
            raise ValueError(f"`hu_per_unit` (HU per model-input unit) must be > 0 and finite, got {hu_per_unit}")
        self.hu_per_unit = float(hu_per_unit)

    def _prepare(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return intensity_rank(x)

    def _change(self, x: torch.Tensor, params: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return hu_change(params, context) / self.hu_per_unit

    def _amount(self, params: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return params.abs().amax(dim=1)

    def _project(self, params: torch.Tensor, eps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(params, eps[:, None]), -eps[:, None])

    def _draw(self, x, amount, context, generator) -> torch.Tensor:
        raw = torch.rand(x.shape[0], 2, generator=generator, device=generator.device).to(x.device) * 2 - 1
        return raw * (amount / raw.abs().amax(dim=1).clamp_min(_TINY))[:, None]

    def _realised(self, x, delta, params, context) -> torch.Tensor:
        return delta.flatten(1).abs().amax(dim=1) * self.hu_per_unit


_DESCRIPTION = (
    "every voxel's CT number changes by at most eps HU, through a global offset and a contrast (window width) "
    "change (HU per model-input unit from the preprocessing window; 1400, the window -1000..400 HU, when unknown)"
)
_UNITS: dict = {
    "norms": ("hu",),
    "unit": PHYSICAL_UNITS["hu"],
    "budgets": (0.0, 5.0, 10.0, 20.0, 50.0),
    "citation": "CT number offset and gain, what CT quality control checks on a water phantom; worst case by "
    "PGD (Madry et al., ICLR 2018) on the two parameters",
}


@register_attack(
    "ct-intensity",
    f"worst-case CT intensity change: {_DESCRIPTION}; {{steps}}-step PGD on the offset and contrast from the "
    "worst of 10 random ones, loss ce (worst iterate per sample), {restarts} restart(s)",
    **_UNITS,
)
def build_ct_intensity(model, *, eps, norm: str, settings: AttackSettings) -> CTIntensity:
    """PGD on a HU offset and contrast change (``settings.step_size``, in model-input units, does not apply)."""
    return CTIntensity(
        model,
        steps=settings.steps,
        restarts=settings.restarts,
        hu_per_unit=_hu_scale(settings),
        **settings.base_arguments(eps),
    )


@register_attack(
    "ct-intensity-random",
    f"random CT intensity change (baseline): {_DESCRIPTION}, drawn at random at the full budget",
    gradient=False,
    uses_steps=False,
    **_UNITS,
)
def build_random_ct_intensity(model, *, eps, norm: str, settings: AttackSettings) -> CTIntensity:
    """Random HU offsets and contrast changes at the full budget, ``settings.noise_draws`` draws (worst kept)."""
    return CTIntensity(
        model,
        optimise=False,
        draws=settings.noise_draws,
        hu_per_unit=_hu_scale(settings),
        **settings.base_arguments(eps),
    )


def _hu_scale(settings: AttackSettings) -> float:
    """HU per input unit where the settings know it (the evaluation: from the cache's window), else 1400."""
    return DEFAULT_HU_PER_UNIT if settings.hu_per_unit is None else float(settings.hu_per_unit)
