"""Per-voxel margin statistics: which voxels flip, where, and at which radius (for logs and reports).

For each foreground class and region (``boundary``: voxels of the class with a voxel of another class
in their 3x3(x3) neighbourhood; ``interior``: the rest of the class), accumulate the number of voxels,
how many were already wrong on the clean input, how many flipped within the sample's margin, and a
histogram of the flip radii.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["VoxelMarginStats", "class_boundary"]


def class_boundary(onehot: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, C, *spatial)``: voxels of each class touching another class (one-voxel erosion rim)."""
    pool = F.max_pool2d if onehot.dim() == 4 else F.max_pool3d
    eroded = -pool(-onehot.float(), kernel_size=3, stride=1, padding=1)
    return (onehot > 0) & (eroded <= 0)


class VoxelMarginStats:
    """Accumulates flip statistics over an epoch.

    Args:
        num_classes: classes including background.
        max_radius: upper edge of the radius histogram (use IMA's ``eps_max``).
        bins: histogram bins over ``[0, max_radius]``.
    """

    REGIONS = ("boundary", "interior")

    def __init__(self, num_classes: int, max_radius: float, bins: int = 20) -> None:
        self.num_classes = num_classes
        self.edges = torch.linspace(0, max(max_radius, 1e-6), bins + 1)
        self.reset()

    def reset(self) -> None:
        shape = (self.num_classes, len(self.REGIONS))
        self.voxels = torch.zeros(shape, dtype=torch.int64)
        self.clean_wrong = torch.zeros(shape, dtype=torch.int64)
        self.flipped = torch.zeros(shape, dtype=torch.int64)
        self.histogram = torch.zeros((*shape, len(self.edges) - 1), dtype=torch.int64)

    @torch.no_grad()
    def update(self, label: torch.Tensor, clean_pred: torch.Tensor, flip_radius: torch.Tensor) -> None:
        """Add a batch: ``label``, ``clean_pred`` ``(B, *spatial)`` and the attack's ``flip_radius``."""
        onehot = F.one_hot(label.long(), self.num_classes).movedim(-1, 1)
        rim = class_boundary(onehot)
        wrong = clean_pred != label
        finite = torch.isfinite(flip_radius) & ~wrong
        edges = self.edges.to(flip_radius.device)
        for c in range(1, self.num_classes):
            in_class = label == c
            for r, region in enumerate((rim[:, c], in_class & ~rim[:, c])):
                self.voxels[c, r] += int(region.sum())
                self.clean_wrong[c, r] += int((region & wrong).sum())
                radii = flip_radius[region & finite]
                self.flipped[c, r] += radii.numel()
                if radii.numel():
                    self.histogram[c, r] += (
                        torch.histc(
                            radii.float().clamp(max=float(edges[-1])),
                            bins=len(edges) - 1,
                            min=0.0,
                            max=float(edges[-1]),
                        )
                        .long()
                        .cpu()
                    )

    def summary(self, class_names: dict[int, str] | None = None) -> dict:
        """Plain-dict statistics: per class and region, fractions and the radius histogram."""
        out: dict[str, Any] = {"edges": self.edges.tolist(), "classes": {}}
        for c in range(1, self.num_classes):
            name = (class_names or {}).get(c, f"class {c}")
            out["classes"][name] = {
                region: {
                    "voxels": int(self.voxels[c, r]),
                    "clean_wrong_fraction": float(self.clean_wrong[c, r]) / max(int(self.voxels[c, r]), 1),
                    "flipped_fraction": float(self.flipped[c, r]) / max(int(self.voxels[c, r]), 1),
                    "radius_histogram": self.histogram[c, r].tolist(),
                }
                for r, region in enumerate(self.REGIONS)
            }
        return out
