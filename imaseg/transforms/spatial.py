"""Fitting images to the model's input size, optionally leaving one axis (the slice axis) alone.

``FitToSize`` is built from MONAI's ``Resize`` / ``SpatialPad`` / ``ResizeWithPadOrCrop``, so the
MetaTensor affine stays exact and predictions can be mapped back to the source grid with it.

Modes:
- ``pad-resize`` (default): keep the aspect ratio, scale so the image fits ``size``, pad the rest.
- ``resize``: stretch to ``size``.
- ``pad-crop``: no scaling; centre pad or crop to ``size``.
- ``none``: leave the size alone.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Resize, ResizeWithPadOrCrop, SpatialPad, Transform

from imaseg.utils.checks import check_choice

__all__ = ["FIT_MODES", "FitToSize", "FitToSized"]

FIT_MODES = ("pad-resize", "resize", "pad-crop", "none")


class FitToSize(Transform):
    """Bring a channel-first image to ``size`` on every spatial axis except ``keep_axis``.

    Args:
        size: target size of the fitted axes (in order, ``keep_axis`` skipped).
        mode: one of :data:`FIT_MODES`.
        keep_axis: spatial axis left untouched (the slice axis in 2D mode), or ``None``.
        label: nearest-neighbour interpolation (for label maps) instead of bilinear.
    """

    def __init__(
        self, size: Sequence[int], mode: str = "pad-resize", keep_axis: int | None = None, label: bool = False
    ):
        self.size = [int(s) for s in size]
        if any(s < 1 for s in self.size):
            raise ValueError(f"`spatial_size` entries must be >= 1, got {list(size)}")
        self.mode = check_choice("resize", mode, FIT_MODES)
        self.keep_axis = keep_axis
        self.label = label

    def _full_size(self, spatial: Sequence[int], fitted: Sequence[int]) -> list[int]:
        axes = [a for a in range(len(spatial)) if a != self.keep_axis]
        if len(axes) != len(fitted):
            raise ValueError(
                f"`spatial_size` has {len(fitted)} entries but the image has {len(axes)} axes to fit "
                f"(spatial shape {list(spatial)}, keep_axis {self.keep_axis})"
            )
        out = list(spatial)
        for axis, value in zip(axes, fitted):
            out[axis] = int(value)
        return out

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.mode == "none":
            return image
        spatial = list(image.shape[1:])
        target = self._full_size(spatial, self.size)
        if self.mode == "pad-crop":
            return ResizeWithPadOrCrop(target)(image)
        interp = {"mode": "nearest"} if self.label else {"mode": "bilinear", "anti_aliasing": True}
        if self.mode == "resize":
            return Resize(target, **interp)(image)
        axes = [a for a in range(len(spatial)) if a != self.keep_axis]
        factor = min(target[a] / spatial[a] for a in axes)
        scaled = list(spatial)
        for axis in axes:
            scaled[axis] = max(1, min(target[axis], round(spatial[axis] * factor)))
        out = Resize(scaled, **interp)(image) if scaled != spatial else image
        return SpatialPad(target)(out)


class FitToSized(MapTransform):
    """Dictionary version of :class:`FitToSize`; ``label_keys`` use nearest-neighbour interpolation."""

    def __init__(
        self,
        keys: KeysCollection,
        size: Sequence[int],
        mode: str = "pad-resize",
        keep_axis: int | None = None,
        label_keys: Collection[Hashable] = ("label",),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        labels = {label_keys} if isinstance(label_keys, str) else set(label_keys)
        self.fitters = {key: FitToSize(size, mode, keep_axis, label=key in labels) for key in self.keys}

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.fitters[key](d[key])
        return d
