"""Worst-case k-space artefact: band-limited energy in the centre of k-space, at a stated ratio to the image's.

Model: the attacked image is ``x + delta`` with ``delta = ||x||_2 * Re IFFT(M * D)``, where ``D`` is a complex
perturbation of each channel's k-space (the orthonormal FFT over the spatial axes) and ``M`` the central
``band`` of k-space: the frequencies within ``band / 2`` cycles per voxel of zero along every axis
(``band = 0.25``: wavelengths of 8 voxels and longer; ``band = 1``: all of k-space, which is the
adversarial noise of ``snr-noise``). ``M`` is symmetric about zero, so ``delta`` is real and band-limited:
low-frequency shading and ripples, what corrupted or mis-scaled samples near the centre of k-space do.

The budget ``eps`` is the energy of the change relative to the image's, ``||delta||_2 / ||x||_2`` per sample
(all channels together; RMS over RMS, so ``-20 log10(eps)`` dB below the image), unit ``asr`` (attack names
``kspace-asr``, ``kspace-random-asr``). The parameters ``D`` are kept canonical (the spectrum of the change
they make), so their Euclidean norm is the budget they use, and projecting scales them down. The realised
budget in the result is that of the change after clipping.
"""

from __future__ import annotations

import torch

from imaseg.attacks.parametric import ParametricAttack
from imaseg.attacks.registry import AttackSettings, register_attack
from imaseg.utils.units import PHYSICAL_UNITS

__all__ = [
    "KSpaceAttack",
    "build_kspace",
    "build_random_kspace",
    "central_band",
    "kspace_change",
    "relative_change",
]

_TINY = 1e-12


def central_band(spatial_shape: tuple[int, ...], band: float, device: torch.device | None = None) -> torch.Tensor:
    """The central ``band`` of k-space, a boolean ``(*spatial)`` mask in FFT order: the frequencies within
    ``band / 2`` cycles per voxel of zero along every axis (symmetric about zero).

    >>> central_band((8,), 0.5).int().tolist()  # frequencies 0, 1/8, 1/4, 3/8, -1/2, -3/8, -1/4, -1/8
    [1, 1, 1, 0, 0, 0, 1, 1]
    """
    mask = torch.ones(spatial_shape, dtype=torch.bool, device=device)
    for axis, n in enumerate(spatial_shape):
        inside = torch.fft.fftfreq(n, device=device).abs() <= band / 2 + 1e-6
        mask = mask & inside.view(*([1] * axis), n, *([1] * (len(spatial_shape) - axis - 1)))
    return mask


def _spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))


def _unit_change(spectrum: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``Re IFFT(M * D)``, ``(B, C, *spatial)``, of the real view ``(B, C, *spatial, 2)`` of ``D``."""
    complex_spectrum = torch.view_as_complex(spectrum.contiguous()) * mask
    return torch.fft.ifftn(complex_spectrum, dim=tuple(range(2, mask.dim() + 2)), norm="ortho").real


def _spectrum_of(change: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The canonical parameters of a band-limited ``change``: the real view of its masked spectrum."""
    return torch.view_as_real(torch.fft.fftn(change, dim=_spatial_dims(change), norm="ortho") * mask)


def kspace_change(x: torch.Tensor, spectrum: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The change ``||x||_2 * Re IFFT(M * D)`` of each sample (``spectrum`` is the real view of ``D``)."""
    scale = x.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
    return _unit_change(spectrum, mask) * scale


def relative_change(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``||delta||_2 / ||x||_2`` per sample, ``(B,)`` (0 for an empty image)."""
    return delta.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1).clamp_min(_TINY)


class KSpaceAttack(ParametricAttack):
    """A band-limited k-space change at a stated energy: PGD (``optimise=True``) or random (the baseline).

    Args:
        eps: energy of the change relative to the image's, ``||delta|| / ||x||``, float or ``(B,)``.
        band: the central fraction of k-space along each axis the change may use, in ``(0, 1]``.
        Others: see :class:`~imaseg.attacks.parametric.ParametricAttack`.

    Example:
        >>> net = torch.nn.Conv2d(1, 3, 3, padding=1)
        >>> x, y = torch.rand(2, 1, 16, 16), torch.randint(0, 3, (2, 16, 16))
        >>> result = KSpaceAttack(net, eps=0.1, steps=3).run(x, y)
        >>> bool((result.norm <= 0.1 + 1e-5).all())
        True
    """

    unit = "asr"

    def __init__(self, model, *, eps: float | torch.Tensor, band: float = 0.25, **options) -> None:
        super().__init__(model, eps=eps, **options)
        if not 0 < float(band) <= 1:
            raise ValueError(f"`band` (central fraction of k-space) must be in (0, 1], got {band}")
        self.band = float(band)

    def _prepare(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return central_band(tuple(x.shape[2:]), self.band, x.device)

    def _change(self, x: torch.Tensor, params: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return kspace_change(x, params, context)

    def _amount(self, params: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return _unit_change(params, context).flatten(1).norm(dim=1)

    def _project(self, params: torch.Tensor, eps: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        change = _unit_change(params, context)
        factor = (eps / change.flatten(1).norm(dim=1).clamp_min(_TINY)).clamp(max=1.0)
        return _spectrum_of(change * factor.view(-1, *([1] * (change.dim() - 1))), context)

    def _draw(self, x, amount, context, generator) -> torch.Tensor:
        shape = (*x.shape, 2)
        raw = torch.randn(shape, generator=generator, device=generator.device).to(x.device)
        change = _unit_change(raw, context)
        factor = amount / change.flatten(1).norm(dim=1).clamp_min(_TINY)
        return _spectrum_of(change * factor.view(-1, *([1] * (change.dim() - 1))), context)

    def _realised(self, x, delta, params, context) -> torch.Tensor:
        return relative_change(x, delta)


_DESCRIPTION = (
    "low-frequency shading and ripples from the central quarter of k-space (wavelengths of 8 voxels and more), "
    "with an energy of at most eps times the image's (eps 0.1: 20 dB below the image)"
)
_UNITS: dict = {
    "norms": ("asr",),
    "unit": PHYSICAL_UNITS["asr"],
    "budgets": (0.0, 0.02, 0.05, 0.1, 0.2),
    "citation": "k-space artefacts as random augmentations: MONAI RandKSpaceSpikeNoise, TorchIO (Perez-Garcia "
    "et al., CMPB 2021); here their worst case, PGD (Madry et al., ICLR 2018) on the masked k-space",
}


@register_attack(
    "kspace",
    f"worst-case k-space artefact: {_DESCRIPTION}; {{steps}}-step PGD on the k-space perturbation, loss ce "
    "(worst iterate per sample), {restarts} restart(s)",
    **_UNITS,
)
def build_kspace(model, *, eps, norm: str, settings: AttackSettings) -> KSpaceAttack:
    """PGD in the central band of k-space (``settings.step_size``, in model-input units, does not apply)."""
    return KSpaceAttack(model, steps=settings.steps, restarts=settings.restarts, **settings.base_arguments(eps))


@register_attack(
    "kspace-random",
    f"random k-space artefact (baseline): {_DESCRIPTION}, drawn at random at the full budget",
    gradient=False,
    uses_steps=False,
    **_UNITS,
)
def build_random_kspace(model, *, eps, norm: str, settings: AttackSettings) -> KSpaceAttack:
    """Random perturbations of the central band of k-space at the full budget, ``settings.noise_draws`` draws."""
    return KSpaceAttack(model, optimise=False, draws=settings.noise_draws, **settings.base_arguments(eps))
