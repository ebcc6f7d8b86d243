"""Labels as MONAI pipelines give them -> class indices: ``(B, *spatial)``, ``(B, 1, *spatial)`` or one-hot
``(B, K, *spatial)`` (what ``AsDiscreted(to_onehot=K)`` yields)."""

from __future__ import annotations

import torch

from imaseg.functional import as_class_labels

__all__ = ["class_indices"]


def class_indices(label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``(B, *spatial)`` int64 class indices on the image's device from any of MONAI's label layouts.

    >>> image = torch.zeros(1, 1, 2, 2)
    >>> onehot = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]]]])
    >>> class_indices(onehot, image).tolist()
    [[[0, 1], [1, 1]]]

    Raises:
        ValueError: a multi-channel label that is not one-hot (each voxel exactly one channel at 1), or a
            shape that does not fit the image.
        TypeError: a float class map with non-integer values.
    """
    label = label.as_tensor() if hasattr(label, "as_tensor") else label
    if label.dim() == image.dim() and label.shape[1] > 1:
        binary = bool(torch.all((label == 0) | (label == 1)))
        if not binary or not bool(torch.all(label.sum(1) == 1)):
            raise ValueError(
                f"a label with {label.shape[1]} channels must be one-hot (each voxel exactly one channel at 1, as "
                "AsDiscreted(to_onehot=K) gives); give class indices (B, 1, *spatial) otherwise"
            )
        label = label.argmax(1)
    return as_class_labels(label, image)
