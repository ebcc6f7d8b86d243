"""Inference: the one path from a preprocessed image to class predictions, below evaluation and prediction.

A case is a channel-first array ``(C, *spatial)``. A 2D model on a volume sees its slices along
``slice_axis``, in batches; a 3D model sees the whole volume, through a sliding window of ``roi_size``
when the volume is larger (:class:`imaseg.attacks.SlidingWindowForward`, differentiable, so attacks use the
same forward). ``imaseg predict``, evaluation's clean pass and its attacks all go through these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from imaseg.attacks import SlidingWindowForward
from imaseg.cache.reader import from_slices, to_slices
from imaseg.metrics.prediction import predict_classes

__all__ = [
    "InferenceLayout",
    "case_forward",
    "join_samples",
    "predict_batch",
    "sample_batches",
    "segment",
    "to_samples",
]

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class InferenceLayout:
    """How a model meets a case: ``slice_axis`` for a 2D model on a volume (``None``: the whole image),
    ``roi_size`` the sliding window of a 3D model, ``batch_size`` slices per forward."""

    slice_axis: int | None
    roi_size: tuple[int, ...] | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {self.batch_size}")

    @property
    def samples_per_batch(self) -> int:
        return self.batch_size if self.slice_axis is not None else 1


def case_forward(network: nn.Module, spatial_shape: Sequence[int], layout: InferenceLayout) -> Forward:
    """The forward a case is segmented (and attacked) through: the network, or a sliding window over it for
    a 3D volume larger than the window."""
    roi = layout.roi_size
    if layout.slice_axis is not None or roi is None or all(s <= r for s, r in zip(spatial_shape, roi)):
        return network
    return SlidingWindowForward(network, roi, sw_batch_size=2)


def to_samples(array: torch.Tensor, slice_axis: int | None) -> torch.Tensor:
    """``(C, *spatial)`` -> the model's samples: ``(S, C, *plane)`` slices, or ``(1, C, *spatial)``."""
    return to_slices(array, slice_axis) if slice_axis is not None else array[None]


def join_samples(samples: list[torch.Tensor], slice_axis: int | None, *, channel: bool) -> torch.Tensor:
    """Batches of per-sample outputs back to one case: ``(C, *spatial)`` with ``channel``, else ``(*spatial)``."""
    stacked = torch.cat(samples)
    if slice_axis is None:
        return stacked[0]
    return from_slices(stacked, slice_axis) if channel else from_slices(stacked[:, None], slice_axis)[0]


def sample_batches(samples: torch.Tensor, layout: InferenceLayout) -> Iterator[tuple[int, slice]]:
    """``(start, slice)`` of each batch of samples."""
    step = layout.samples_per_batch
    for start in range(0, samples.shape[0], step):
        yield start, slice(start, start + step)


def predict_batch(forward: Forward, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Class predictions of one batch (no gradient) and the number of classes the model returns."""
    with torch.no_grad():
        logits = forward(x)
    return predict_classes(logits), int(logits.shape[1])


def segment(
    network: nn.Module,
    image: np.ndarray | torch.Tensor,
    layout: InferenceLayout,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Class indices ``(*spatial)`` (uint8) of one preprocessed case ``(C, *spatial)``.

    >>> net = nn.Conv2d(1, 3, 1)
    >>> segment(net, np.zeros((1, 4, 5, 6), np.float32), InferenceLayout(slice_axis=2, batch_size=2)).shape
    (4, 5, 6)
    """
    tensor = torch.as_tensor(image)
    samples = to_samples(tensor, layout.slice_axis)
    forward = case_forward(network, tensor.shape[1:], layout)
    predictions = []
    for _, batch in sample_batches(samples, layout):
        prediction, _ = predict_batch(forward, samples[batch].to(device))
        predictions.append(prediction.to(torch.uint8).cpu())
    return join_samples(predictions, layout.slice_axis, channel=False).numpy()
