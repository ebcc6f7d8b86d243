"""A differentiable forward pass through MONAI's sliding-window inference, for attacking whole volumes.

``SlidingWindowForward(network, roi_size)`` is an ``nn.Module`` whose forward is
``monai.inferers.sliding_window_inference`` over ``network``: gradients flow through the window
blending to the full-volume input, so any attack here can take a whole 3D case and a budget over the
whole volume. The network is a submodule, so the attack's eval-mode and frozen-weight guards reach it.

Memory: with ``checkpoint=True`` (the default) each window's forward runs under activation
checkpointing, so the graph of a whole-volume attack step keeps the windows' inputs and the blended output
only, and the backward recomputes one window batch at a time: peak memory is bounded by the window batch,
as in inference, whatever the volume's size, for about one more forward per step. ``checkpoint=False``
keeps every window's activations until the backward (faster, memory growing with the number of windows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.utils.checkpoint
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
    checkpoint: recompute each window batch in the backward instead of keeping its activations (see above).
    """

    def __init__(
        self,
        network: nn.Module,
        roi_size: Sequence[int],
        *,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        mode: str = "gaussian",
        checkpoint: bool = True,
    ) -> None:
        super().__init__()
        self.network = network
        self.roi_size = tuple(int(r) for r in roi_size)
        self.sw_batch_size = int(sw_batch_size)
        self.overlap = float(overlap)
        self.mode = mode
        self.checkpoint = checkpoint

    def _window(self, window: torch.Tensor) -> torch.Tensor:
        if self.checkpoint and torch.is_grad_enabled() and window.requires_grad:
            return cast(torch.Tensor, torch.utils.checkpoint.checkpoint(self.network, window, use_reentrant=False))
        return cast(torch.Tensor, self.network(window))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.dim() - 2 != len(self.roi_size):
            raise ValueError(f"roi_size {self.roi_size} does not fit an input of shape {tuple(image.shape)}")
        return cast(  # a tensor-valued network gives a tensor
            torch.Tensor,
            sliding_window_inference(
                image, self.roi_size, self.sw_batch_size, self._window, overlap=self.overlap, mode=self.mode
            ),
        )
