"""Batch augmentation on tensors (2D and 3D, one code path), driven by an explicit generator.

Random affine (rotation in the first two spatial axes, isotropic zoom) through one ``affine_grid`` /
``grid_sample`` per batch (bilinear for images, nearest for labels), random flips, and intensity
changes (brightness, contrast, gamma on the min-max range, optional Gaussian noise). Every random
number comes from the generator passed in, so a resumed run repeats the same augmentations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["BatchAugment"]


class BatchAugment:
    """Args: see the ``aug_*`` fields of :class:`~imaseg.training.TrainConfig`."""

    def __init__(
        self, *, rotate: float = 20.0, scale=(0.85, 1.2), flip: bool = True, intensity: float = 0.15, noise: float = 0.0
    ) -> None:
        self.rotate = math.radians(rotate)
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip = flip
        self.intensity = intensity
        self.noise = noise

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
        """``images (B, C, *S)`` float, ``labels (B, 1, *S)`` int -> augmented copies."""
        batch, dims = images.shape[0], images.dim() - 2
        device = images.device

        def uniform(lo, hi, *shape):
            return (
                torch.rand(shape or (batch,), generator=generator, device=generator.device).to(device) * (hi - lo) + lo
            )

        angle = uniform(-self.rotate, self.rotate)
        zoom = uniform(*self.scale)
        theta = torch.zeros(batch, dims, dims + 1, device=device)
        for axis in range(dims):
            theta[:, axis, axis] = 1.0 / zoom
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # grid axes are (x, y[, z]) = reversed spatial axes; rotate the last two grid axes = first two spatial ones
        a, b = dims - 1, dims - 2
        theta[:, a, a], theta[:, a, b], theta[:, b, a], theta[:, b, b] = cos, -sin, sin, cos
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        labels = F.grid_sample(labels.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).long()
        if self.flip:
            for axis in range(min(dims, 2)):
                mask = uniform(0, 1) < 0.5
                if mask.any():
                    images[mask] = images[mask].flip(axis + 2)
                    labels[mask] = labels[mask].flip(axis + 2)
        if self.intensity > 0:
            view = (-1, *([1] * (images.dim() - 1)))
            lo = images.flatten(1).amin(1).view(view)
            hi = images.flatten(1).amax(1).view(view)
            span = (hi - lo).clamp_min(1e-6)
            gamma = uniform(1 - self.intensity, 1 + self.intensity).view(view)
            normalised = ((images - lo) / span).clamp(0, 1) ** gamma
            contrast = uniform(1 - self.intensity, 1 + self.intensity).view(view)
            brightness = uniform(-self.intensity, self.intensity).view(view) * span
            images = lo + span * normalised
            mean = images.flatten(1).mean(1).view(view)
            images = ((images - mean) * contrast + mean + brightness).clamp(lo, hi)
        if self.noise > 0:
            images = images + self.noise * torch.randn(images.shape, generator=generator, device=generator.device).to(
                device
            )
        return images, labels
