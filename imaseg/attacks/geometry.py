"""Norm-ball geometry of perturbations, per sample, for L2 and Linf, 2D and 3D alike.

All functions take ``(B, ...)`` tensors and a per-sample budget ``eps`` of shape ``(B,)``.
"""

from __future__ import annotations

import torch

__all__ = [
    "NORMS",
    "clip_to_range",
    "perturbation_norm",
    "project",
    "random_in_ball",
    "scale_to_sphere",
    "step_direction",
]

NORMS = ("l2", "linf")
_TINY = 1e-12


def _view(per_sample: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return per_sample.view(-1, *([1] * (like.dim() - 1)))


def perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample L2 or Linf norm, ``(B,)``."""
    flat = delta.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


def project(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project each sample's ``delta`` onto its ball of radius ``eps``."""
    if norm == "linf":
        bound = _view(eps, delta)
        return torch.maximum(torch.minimum(delta, bound), -bound)
    factor = (eps / perturbation_norm(delta, "l2").clamp_min(_TINY)).clamp(max=1.0)
    return delta * _view(factor, delta)


def step_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit norm: ``sign(g)`` for Linf, ``g / ||g||_2`` for L2."""
    if norm == "linf":
        return grad.sign()
    return grad / _view(perturbation_norm(grad, "l2").clamp_min(_TINY), grad)


def scale_to_sphere(noise: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Rescale each sample of ``noise`` to norm exactly ``eps`` (zero noise stays zero)."""
    return noise * _view(eps / perturbation_norm(noise, norm).clamp_min(_TINY), noise)


def random_in_ball(shape, eps: torch.Tensor, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A random start inside the ball: uniform per element for Linf; Gaussian direction with a radius
    uniform in ``[0, eps]`` for L2. Drawn on the generator's device, returned there."""
    device = generator.device if generator is not None else eps.device
    eps = eps.to(device)
    if norm == "linf":
        unit = torch.rand(shape, generator=generator, device=device) * 2 - 1
        return unit * _view(eps, unit)
    direction = torch.randn(shape, generator=generator, device=device)
    radius = torch.rand(shape[0], generator=generator, device=device) * eps
    return scale_to_sphere(direction, radius, "l2")


def clip_to_range(image: torch.Tensor, delta: torch.Tensor, clip_range: tuple[float, float] | None) -> torch.Tensor:
    """Return the ``delta`` that keeps ``image + delta`` inside ``clip_range`` (unchanged for ``None``)."""
    if clip_range is None:
        return delta
    return (image + delta).clamp(clip_range[0], clip_range[1]) - image
