"""Intensity scaling per modality, recording the linear map so budgets can be told in source units.

Modes (``output = clip(input * scale + offset)`` for all of them):

- ``none``: keep the source intensities (ACDC as redistributed is already in [0, 1]).
- ``zscore``: subtract the mean and divide by the standard deviation of the foreground (voxels != 0
  by default) - the usual choice for MRI.
- ``window``: map the source range ``window`` (e.g. HU -1000..400 for lung CT) onto ``target_range``,
  clipping outside it.
- ``range``: like ``window`` but meant for fixed source ranges such as 0..255 X-rays.
- ``percentile``: like ``window`` with the range given by per-image percentiles.

The applied ``scale`` (input units per source unit) and ``offset`` are stored in the MetaTensor's meta
as ``intensity_scale`` / ``intensity_offset``: an L2 or Linf budget ``eps`` in model-input units is
``eps / scale`` in source units (HU, raw grey values).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from imaseg.utils.checks import check_choice

__all__ = ["INTENSITY_MODES", "IntensityScaling", "IntensityScalingd"]

INTENSITY_MODES = ("none", "zscore", "window", "range", "percentile")


class IntensityScaling(Transform):
    """Scale a channel-first image; see the module docstring for the modes."""

    def __init__(
        self,
        mode: str = "none",
        *,
        source_range: Sequence[float] | None = None,
        target_range: Sequence[float] = (0.0, 1.0),
        percentiles: Sequence[float] = (0.5, 99.5),
        nonzero: bool = True,
        clip: bool = True,
    ) -> None:
        self.mode = check_choice("intensity", mode, INTENSITY_MODES)
        if self.mode in ("window", "range") and (source_range is None or len(source_range) != 2):
            raise ValueError(f"intensity mode {self.mode!r} needs a source range (lo, hi), got {source_range!r}")
        if source_range is not None and len(source_range) == 2 and source_range[1] <= source_range[0]:
            raise ValueError(f"source range must be increasing, got {list(source_range)}")
        if len(target_range) != 2 or target_range[1] <= target_range[0]:
            raise ValueError(f"target range must be an increasing pair, got {list(target_range)}")
        lo, hi = percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {list(percentiles)}")
        self.source_range = tuple(source_range) if source_range is not None else None
        self.target_range = tuple(target_range)
        self.percentiles = (lo, hi)
        self.nonzero = nonzero
        self.clip = clip

    def linear_map(self, image: torch.Tensor) -> tuple[float, float]:
        """Return ``(scale, offset)`` of the map this image gets."""
        x = image.as_tensor() if isinstance(image, MetaTensor) else image
        x = x.float()
        if self.mode == "none":
            return 1.0, 0.0
        if self.mode == "zscore":
            values = x[x != 0] if self.nonzero and bool((x != 0).any()) else x.reshape(-1)
            mean, std = values.mean().item(), values.std().item()
            std = std if std > 1e-8 else 1.0
            return 1.0 / std, -mean / std
        if self.mode == "percentile":
            flat = x.reshape(-1)
            if flat.numel() > 4_000_000:  # quantile has a size limit; a strided subsample is plenty
                flat = flat[:: flat.numel() // 4_000_000 + 1]
            lo, hi = torch.quantile(flat, torch.tensor([p / 100 for p in self.percentiles])).tolist()
        else:
            if self.source_range is None:  # window / range modes need one (checked in __init__)
                raise RuntimeError(f"intensity mode {self.mode!r} has no source range")
            lo, hi = self.source_range
        hi = hi if hi > lo else lo + 1.0
        b_lo, b_hi = self.target_range
        scale = (b_hi - b_lo) / (hi - lo)
        return scale, b_lo - lo * scale

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        scale, offset = self.linear_map(image)
        out = image.float() * scale + offset
        if self.clip and self.mode in ("window", "range", "percentile"):
            out = out.clamp(*self.target_range)
        if isinstance(out, MetaTensor):
            out.meta["intensity_scale"] = scale
            out.meta["intensity_offset"] = offset
            out.meta["intensity_mode"] = self.mode
        return out


class IntensityScalingd(MapTransform):
    """Dictionary version of :class:`IntensityScaling` (apply it to image keys only, never labels)."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs: object) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scaler = IntensityScaling(**kwargs)  # type: ignore[arg-type]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.scaler(d[key])
        return d
