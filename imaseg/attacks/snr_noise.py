"""Noise at a stated signal-to-noise ratio: worst-case (PGD-shaped) and random Gaussian, 2D and 3D.

The budget is the noise-to-signal ratio ``eps = RMS(noise) / RMS(signal)`` of each sample (unit ``nsr``,
attack names ``snr-noise-nsr`` and ``snr-noise-random-nsr``), so that ``eps = 0`` is the clean image and
larger budgets are stronger, like every other budget; the SNR in decibels is ``-20 log10(eps)``
(:func:`snr_db`: eps 0.1 is 20 dB, 0.05 is 26 dB, 0.01 is 40 dB). The signal is the RMS of the sample's
model input (all voxels, background included). Per sample this is an L2 ball of radius
``eps * RMS(x) * sqrt(voxels)``: :class:`SNRNoise` runs PGD inside it (noise shaped adversarially within
the energy of that SNR) or, with ``optimise=False``, draws Gaussian noise with exactly that energy (the
baseline). The realised budget in the result is the noise-to-signal ratio after clipping.

Rician noise (``rician-noise-nsr``, ``rician-noise-random-nsr``), the noise of magnitude MR: complex Gaussian
noise ``n_re + i n_im`` added to the (real) signal before taking the magnitude, ``|x + n_re + i n_im|``; the
budget is ``sigma / RMS(x)`` with ``sigma`` the RMS of each component (the convention of MONAI's
``RandRicianNoise``), an L2 ball of radius ``eps * RMS(x) * sqrt(2 voxels)`` over both components. Its
inputs must be magnitudes (non-negative, proportional to the signal).
"""

from __future__ import annotations

import math

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.losses import AttackLoss
from imaseg.attacks.noise import NoiseAttack
from imaseg.attacks.pgd import PGD
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.attacks.result import AttackResult
from imaseg.utils.checks import check_choice, check_positive_int
from imaseg.utils.units import PHYSICAL_UNITS, nsr_of_snr, snr_db

__all__ = [
    "SNRNoise",
    "build_random_rician_noise",
    "build_random_snr_noise",
    "build_rician_noise",
    "build_snr_noise",
    "nsr_of_snr",
    "signal_rms",
    "snr_db",
]

_TINY = 1e-12


def signal_rms(x: torch.Tensor) -> torch.Tensor:
    """Per-sample RMS of the signal, ``(B,)``."""
    return x.flatten(1).pow(2).mean(dim=1).sqrt()


class SNRNoise(Attack):
    """Noise whose energy is set by an SNR: PGD-shaped (``optimise=True``) or random Gaussian.

    Args:
        eps: noise-to-signal ratio (RMS over RMS), float or ``(B,)``; ``snr_db(eps)`` is the SNR in dB.
        optimise: PGD inside the energy ball (``True``) or random Gaussian noise at exactly that energy.
        distribution: ``"gaussian"`` (added noise) or ``"rician"`` (magnitude of complex Gaussian noise added).
        steps, loss, restarts: of the PGD (``optimise=True``).
        draws: random draws, the per-sample worst kept (``optimise=False``).
        Others: see :class:`~imaseg.attacks.Attack`.

    Example:
        >>> net = torch.nn.Conv2d(1, 3, 3, padding=1)
        >>> x, y = torch.rand(2, 1, 16, 16), torch.randint(0, 3, (2, 16, 16))
        >>> result = SNRNoise(net, eps=0.1, optimise=False).run(x, y)  # 20 dB
        >>> [round(v, 4) for v in result.norm.tolist()]
        [0.1, 0.1]
    """

    def __init__(
        self,
        model,
        *,
        eps: float | torch.Tensor,
        optimise: bool = True,
        distribution: str = "gaussian",
        steps: int = 20,
        loss: str | AttackLoss = "ce",
        restarts: int = 1,
        draws: int = 1,
        **common,
    ) -> None:
        super().__init__(model, eps=eps, norm="l2", **common)
        self.norm = "nsr"  # the budget is relative to each sample's signal, not an absolute L2 radius
        self.optimise = bool(optimise)
        self.distribution = check_choice("distribution", distribution, ("gaussian", "rician"))
        self.steps = check_positive_int("steps", steps, minimum=0)
        self.loss = loss
        self.restarts = check_positive_int("restarts", restarts)
        self.draws = check_positive_int("draws", draws)

    def _run(self, x, y, eps, generator) -> AttackResult:
        rician = self.distribution == "rician"
        attacked = torch.cat([x, torch.zeros_like(x)], dim=1) if rician else x  # (x + n_re, n_im) for Rician
        scale = signal_rms(x) * math.sqrt(attacked[0].numel())  # the L2 radius of a noise-to-signal ratio of 1
        model = _Magnitude(self.model, x.shape[1], self.clip_range) if rician else self.model
        common = {
            "eps": eps * scale,
            "norm": "l2",
            "clip_range": None if rician else self.clip_range,  # Rician: the magnitude is clipped
            "generator": generator,
            "autocast_dtype": self.autocast_dtype,
        }
        inner: Attack
        if self.optimise:
            inner = PGD(model, steps=self.steps, loss=self.loss, restarts=self.restarts, **common)
        else:
            inner = NoiseAttack(model, distribution="gaussian", draws=self.draws, **common)
        result = inner.run(attacked, y)
        result.norm = result.norm / scale.clamp_min(_TINY)
        if isinstance(model, _Magnitude):
            result.adversarial = model.magnitude(result.adversarial)
        return result


class _Magnitude:
    """``model(|re + i im|)`` of a stacked ``(re, im)`` input, clipped to ``clip_range``: Rician noise as an additive
    perturbation of ``(x, 0)``, so PGD and the noise baseline apply unchanged."""

    def __init__(self, model, channels: int, clip_range: tuple[float, float] | None) -> None:
        self.model, self.channels, self.clip_range = model, channels, clip_range

    def magnitude(self, stacked: torch.Tensor) -> torch.Tensor:
        real, imaginary = stacked[:, : self.channels], stacked[:, self.channels :]
        magnitude = (real**2 + imaginary**2 + _TINY).sqrt()  # + tiny: a finite gradient where both are 0
        return magnitude if self.clip_range is None else magnitude.clamp(*self.clip_range)

    def __call__(self, stacked: torch.Tensor) -> torch.Tensor:
        return self.model(self.magnitude(stacked))


_UNITS: dict = {
    "norms": ("nsr",),
    "unit": PHYSICAL_UNITS["nsr"],
    "budgets": (0.0, 0.01, 0.03, 0.1, 0.2),  # SNR inf, 40, 30.5, 20, 14 dB
}
_CITATION = "Adversarial noise within a stated SNR: PGD (Madry et al., ICLR 2018) in the L2 ball of that energy"


@register_attack(
    "snr-noise",
    "worst-case noise at a stated SNR: added noise whose energy is eps times the image's (eps 0.1: an SNR of "
    "20 dB), shaped by {steps}-step PGD, loss ce (worst iterate per sample), {restarts} restart(s)",
    **_UNITS,
    citation=_CITATION,
)
def build_snr_noise(model, *, eps, norm: str, settings: AttackSettings) -> SNRNoise:
    """PGD noise at the SNR ``-20 log10(eps)`` (``settings.step_size``, in model-input units, does not apply)."""
    return SNRNoise(model, steps=settings.steps, restarts=settings.restarts, **settings.base_arguments(eps))


@register_attack(
    "snr-noise-random",
    "random Gaussian noise at a stated SNR (baseline): noise energy eps times the image's (eps 0.1: 20 dB)",
    gradient=False,
    uses_steps=False,
    **_UNITS,
)
def build_random_snr_noise(model, *, eps, norm: str, settings: AttackSettings) -> SNRNoise:
    """Gaussian noise at the SNR ``-20 log10(eps)``, ``settings.noise_draws`` draws (worst kept)."""
    return SNRNoise(model, optimise=False, draws=settings.noise_draws, **settings.base_arguments(eps))


@register_attack(
    "rician-noise",
    "worst-case Rician noise of magnitude MR at a stated SNR: complex noise of standard deviation eps times the "
    "image's RMS (eps 0.1: an SNR of 20 dB) before the magnitude, shaped by {steps}-step PGD, loss ce (worst "
    "iterate per sample), {restarts} restart(s)",
    **_UNITS,
    citation=_CITATION,
)
def build_rician_noise(model, *, eps, norm: str, settings: AttackSettings) -> SNRNoise:
    """PGD Rician noise at the SNR ``-20 log10(eps)``."""
    return SNRNoise(
        model, distribution="rician", steps=settings.steps, restarts=settings.restarts, **settings.base_arguments(eps)
    )


@register_attack(
    "rician-noise-random",
    "random Rician noise of magnitude MR at a stated SNR (baseline): complex Gaussian noise of standard deviation "
    "eps times the image's RMS (eps 0.1: 20 dB) before the magnitude",
    gradient=False,
    uses_steps=False,
    **_UNITS,
)
def build_random_rician_noise(model, *, eps, norm: str, settings: AttackSettings) -> SNRNoise:
    """Random Rician noise at the SNR ``-20 log10(eps)``, ``settings.noise_draws`` draws (worst kept)."""
    return SNRNoise(
        model, distribution="rician", optimise=False, draws=settings.noise_draws, **settings.base_arguments(eps)
    )
