"""A differentiable forward pass through MONAI's sliding-window inference, for attacking whole volumes.

``SlidingWindowForward(network, roi_size)`` is an ``nn.Module`` whose forward is
``monai.inferers.sliding_window_inference`` over ``network``: gradients flow through the window
blending to the full-volume input, so any attack here can take a whole 3D case and a budget over the
whole volume. The network is a submodule, so the attack's eval-mode and frozen-weight guards reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from monai.inferers import sliding_window_inference
from torch import nn

__all__ = ["SlidingWindowForward"]


class SlidingWindowForward(nn.Module):
    """Args:
    network: the segmentation network (takes patches of ``roi_size``).
    roi_size: window size per spatial axis.
    sw_batch_size: windows per network call.
    overlap: window overlap fraction.
    mode: MONAI blend mode, ``"gaussian"`` (default) or ``"constant"``.
    """

    def __init__(
        self,
        network: nn.Module,
        roi_size: Sequence[int],
        *,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        mode: str = "gaussian",
    ) -> None:
        super().__init__()
        self.network = network
        self.roi_size = tuple(int(r) for r in roi_size)
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self.mode = mode

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() - 2 != len(self.roi_size):
            raise ValueError(f"roi_size {self.roi_size} does not fit an input of shape {tuple(image.shape)}")
        return cast(  # a tensor-valued network gives a tensor
            torch.Tensor,
            sliding_window_inference(
                image, self.roi_size, self.sw_batch_size, self.network, overlap=self.overlap, mode=self.mode
            ),
        )
