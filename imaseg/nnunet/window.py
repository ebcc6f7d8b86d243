"""nnU-Net's sliding window as a differentiable ``nn.Module``, so imaseg's attacks see what nnU-Net predicts.

Same tiles as ``nnUNetPredictor.predict_sliding_window_return_logits``: the image is padded (zeros,
split evenly) up to the patch where it is smaller, tile origins come from nnU-Net's
``compute_steps_for_sliding_window`` (evenly spread, step 0.5 of the patch), every tile's logits are
weighted by nnU-Net's Gaussian importance map (sigma 1/8 of the patch, peak 10) and the sum is divided by
the summed weights. With ``mirror_axes`` each tile is predicted on every combination of flips of those
axes and the predictions averaged, as nnU-Net's test-time mirroring does, so an attack's gradient is the
average over the mirrored passes. Unlike nnU-Net (float16 accumulation, ``inference_mode``) everything is
float32 and differentiable; logits agree with nnU-Net's to its float16 rounding.

A 2D configuration on a volume ``(B, C, Z, Y, X)`` predicts every slice along the first spatial axis,
as nnU-Net does; ``(B, C, *patch_dims)`` inputs are windowed directly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from imaseg.nnunet.requirement import require_nnunet

__all__ = ["NnUNetSlidingWindow", "mirror_combinations"]


def mirror_combinations(mirror_axes: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Every non-empty combination of the spatial ``mirror_axes`` as tensor dims (batch and channel first), in
    nnU-Net's order.

    >>> mirror_combinations((0, 1))
    [(2,), (3,), (2, 3)]
    """
    axes = [int(a) + 2 for a in (mirror_axes or ())]
    return [c for n in range(len(axes)) for c in itertools.combinations(axes, n + 1)]


class NnUNetSlidingWindow(nn.Module):
    """Logits ``(B, K, *spatial)`` of an nnU-Net network for preprocessed inputs ``(B, C, *spatial)``.

    Args:
        network: the nnU-Net network (deep supervision off; with it on, the full-resolution output is taken).
        patch_size: the plans' patch size (2 or 3 entries).
        step: tile step as a fraction of the patch (nnU-Net's ``tile_step_size``, default 0.5).
        mirror_axes: spatial axes of test-time mirroring (the checkpoint's ``inference_allowed_mirroring_axes``);
            ``None`` or empty: no mirroring.
        tile_batch: network inputs per call, at least one tile of every input of the batch (memory vs speed;
            the result does not depend on it).
    """

    gaussian: torch.Tensor  # nnU-Net's importance map of one tile (a buffer: follows .to(device))

    def __init__(
        self,
        network: nn.Module,
        patch_size: Sequence[int],
        *,
        step: float = 0.5,
        mirror_axes: Sequence[int] | None = None,
        tile_batch: int = 4,
    ) -> None:
        super().__init__()
        if not 0 < step <= 1:
            raise ValueError(f"`step` must be in (0, 1], got {step}")
        if tile_batch < 1:
            raise ValueError(f"`tile_batch` must be >= 1, got {tile_batch}")
        require_nnunet()
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian

        self.network = network
        self.patch_size = tuple(int(p) for p in patch_size)
        self.step = float(step)
        self.mirror_axes = tuple(int(a) for a in mirror_axes) if mirror_axes else ()
        if any(not 0 <= a < len(self.patch_size) for a in self.mirror_axes):
            raise ValueError(
                f"`mirror_axes` must be spatial axes of a {len(self.patch_size)}D patch, got {mirror_axes}"
            )
        self.tile_batch = int(tile_batch)
        gaussian = compute_gaussian(self.patch_size, 1.0 / 8, 10, torch.float32, torch.device("cpu"))
        self.register_buffer("gaussian", gaussian.clone(), persistent=False)
        self._weights: dict[tuple, torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, step={self.step}, mirror_axes={self.mirror_axes or None}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = len(self.patch_size)
        if x.dim() == dims + 3:  # a 2D configuration on volumes: every slice of the first spatial axis
            b, c, z = x.shape[:3]
            flat = x.movedim(2, 1).reshape(b * z, c, *x.shape[3:])
            out = self._window(flat)
            return out.reshape(b, z, out.shape[1], *out.shape[2:]).movedim(1, 2)
        if x.dim() != dims + 2:
            raise ValueError(
                f"input must be (B, C, *spatial) with {dims} spatial dims (or {dims + 1} for a 2D configuration on "
                f"volumes), got {tuple(x.shape)}"
            )
        return self._window(x)

    def _predict(self, tiles: torch.Tensor) -> torch.Tensor:
        """The network on a batch of tiles, averaged over the mirrored passes."""
        out = self._network(tiles)
        combinations = mirror_combinations(self.mirror_axes)
        for axes in combinations:
            out = out + torch.flip(self._network(torch.flip(tiles, axes)), axes)
        return out / (len(combinations) + 1) if combinations else out

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        out = self.network(x)
        return out[0] if isinstance(out, list | tuple) else out

    def _steps(self, shape: Sequence[int]) -> list[tuple[slice, ...]]:
        from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

        steps = compute_steps_for_sliding_window(tuple(shape), self.patch_size, self.step)
        return [tuple(slice(s, s + p) for s, p in zip(start, self.patch_size)) for start in itertools.product(*steps)]

    def _weight_sum(self, shape: tuple[int, ...], tiles: list[tuple[slice, ...]], device: torch.device) -> torch.Tensor:
        key = (shape, str(device))
        if key not in self._weights:
            total = torch.zeros(shape, device=device)
            gaussian = self.gaussian.to(device)
            for sl in tiles:
                total[sl] += gaussian
            self._weights[key] = total
        return self._weights[key]

    def _window(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        pads = [max(0, p - s) for p, s in zip(self.patch_size, spatial)]
        below = [q // 2 for q in pads]  # acvl_utils' pad_nd_image: half below, the rest above
        padding = [v for q, lo in zip(reversed(pads), reversed(below)) for v in (lo, q - lo)]
        padded = F.pad(x, padding) if any(pads) else x
        shape = tuple(padded.shape[2:])
        tiles = self._steps(shape)
        gaussian = self.gaussian.to(x.device)
        total: torch.Tensor | None = None
        batch = x.shape[0]
        per_call = max(1, self.tile_batch // batch)  # tile positions per call, each for the whole batch
        for first in range(0, len(tiles), per_call):
            chunk = tiles[first : first + per_call]
            out = self._predict(torch.cat([padded[(slice(None), slice(None), *sl)] for sl in chunk])).float()
            if total is None:  # float32 accumulation, whatever the network's (autocast) dtype
                total = torch.zeros((batch, out.shape[1], *shape), device=x.device)
            for j, sl in enumerate(chunk):
                total[(slice(None), slice(None), *sl)] += out[j * batch : (j + 1) * batch] * gaussian
        assert total is not None
        logits = total / self._weight_sum(shape, tiles, x.device)
        return logits[(slice(None), slice(None), *[slice(lo, lo + s) for lo, s in zip(below, spatial)])]
