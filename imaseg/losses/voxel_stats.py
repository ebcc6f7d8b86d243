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

    :meth:`update` does not wait for the device: the counts accumulate where the batch lives, and the flip
    radii the histogram needs are copied to the host in the background and binned there on the next
    read (:attr:`histogram`, :meth:`summary`) or update (binned on the host, as every run before did:
    CUDA's ``histc`` rounds bin edges differently).

    Args:
        num_classes: classes including background.
        max_radius: upper edge of the radius histogram (use IMA's ``eps_max``).
        bins: histogram bins over ``[0, max_radius]``.
    """

    REGIONS = ("boundary", "interior")

    def __init__(self, num_classes: int, max_radius: float, bins: int = 20) -> None:
        self.num_classes = num_classes
        self.edges = torch.linspace(0, max(max_radius, 1e-6), bins + 1)
        self._top = float(self.edges[-1])
        self.reset()

    def reset(self) -> None:
        shape = (self.num_classes, len(self.REGIONS))
        self._counts = torch.zeros((3, *shape), dtype=torch.int64)  # voxels, clean_wrong, flipped
        self._histogram = torch.zeros((*shape, len(self.edges) - 1), dtype=torch.int64)
        self._pending: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []

    @property
    def voxels(self) -> torch.Tensor:
        """``(classes, regions)`` voxels of each class and region (row 0, background, stays 0)."""
        return self._counts[0].cpu()

    @property
    def clean_wrong(self) -> torch.Tensor:
        """``(classes, regions)`` voxels already wrong on the clean input."""
        return self._counts[1].cpu()

    @property
    def flipped(self) -> torch.Tensor:
        """``(classes, regions)`` correct voxels whose class flipped along the path."""
        return self._counts[2].cpu()

    @property
    def histogram(self) -> torch.Tensor:
        """``(classes, regions, bins)`` flip radii of the flipped voxels."""
        self._bin_pending()
        return self._histogram

    @torch.no_grad()
    def update(self, label: torch.Tensor, clean_pred: torch.Tensor, flip_radius: torch.Tensor) -> None:
        """Add a batch: ``label``, ``clean_pred`` ``(B, *spatial)`` and the attack's ``flip_radius``."""
        self._bin_pending()  # the previous batch's copy has long finished
        label = label.long()
        onehot = F.one_hot(label, self.num_classes).movedim(-1, 1)
        rim = class_boundary(onehot)
        wrong = clean_pred != label
        finite = torch.isfinite(flip_radius) & ~wrong
        regions = len(self.REGIONS)
        code = torch.full_like(label, -1)  # class-and-region bin of every flipped voxel, -1 elsewhere
        counts = []
        for c in range(1, self.num_classes):
            in_class = label == c
            for r, region in enumerate((rim[:, c], in_class & ~rim[:, c])):
                counts.append(torch.stack([region.sum(), (region & wrong).sum(), (region & finite).sum()]))
                code = torch.where(region & finite, c * regions + r, code)
        if counts:
            found = torch.stack(counts).view(self.num_classes - 1, regions, 3).movedim(-1, 0)
            self._counts = self._counts.to(found.device)
            self._counts[:, 1:] += found
        packed = torch.stack([flip_radius.float(), code.to(torch.float32)])  # one copy to the host
        if packed.is_cuda:  # in the background; _bin_pending waits for it (by then long finished)
            host = packed.to("cpu", non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._pending.append((host, event))
        elif packed.device.type != "cpu":
            self._pending.append((packed.to("cpu"), None))
        else:
            self._pending.append((packed, None))

    def _bin_pending(self) -> None:
        """Bin the flip radii of the updates copied since the last read, on the host."""
        regions = len(self.REGIONS)
        for packed, event in self._pending:
            if event is not None:
                event.synchronize()
            radius, code = packed[0], packed[1].long()
            for c in range(1, self.num_classes):
                for r in range(regions):
                    radii = radius[code == c * regions + r]
                    if radii.numel():
                        self._histogram[c, r] += torch.histc(
                            radii.clamp(max=self._top), bins=len(self.edges) - 1, min=0.0, max=self._top
                        ).long()
        self._pending = []

    def summary(self, class_names: dict[int, str] | None = None) -> dict:
        """Plain-dict statistics: per class and region, fractions and the radius histogram."""
        voxels, clean_wrong, flipped, histogram = self.voxels, self.clean_wrong, self.flipped, self.histogram
        out: dict[str, Any] = {"edges": self.edges.tolist(), "classes": {}}
        for c in range(1, self.num_classes):
            name = (class_names or {}).get(c, f"class {c}")
            out["classes"][name] = {
                region: {
                    "voxels": int(voxels[c, r]),
                    "clean_wrong_fraction": float(clean_wrong[c, r]) / max(int(voxels[c, r]), 1),
                    "flipped_fraction": float(flipped[c, r]) / max(int(voxels[c, r]), 1),
                    "radius_histogram": histogram[c, r].tolist(),
                }
                for r, region in enumerate(self.REGIONS)
            }
        return out
