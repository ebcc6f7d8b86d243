"""Post-processing of predicted class maps: what ``predict`` writes, ``evaluate`` scores and a bundle saves.

A post-processor maps a class-index label map to another; attacks never see it (they optimise the
network's raw logits), only the mask that is written or scored changes. Registered names:

- ``none``: the network's argmax as it is (the default: numbers stay those of the raw model);
- ``lcc``: per foreground class, only the largest connected component is kept (MONAI's
  ``KeepLargestConnectedComponent``, ``independent=True``, full connectivity: 8 neighbours in 2D, 26 in
  3D); the voxels of every smaller island of a class become background. A 2D image is one 2D map; a
  volume (also a 2D model's stacked slices) is one 3D map. It needs scikit-image (``imaseg[lcc]``);
- ``lcc2``: the same keeping the two largest components of each class, for paired organs labelled as one
  class (both lungs of the chest X-ray and CT data sets are one class: ``lcc`` deletes one of them).

>>> labels = np.array([[1, 1, 0, 0, 1], [1, 1, 0, 2, 0]], dtype=np.uint8)
>>> postprocess(labels, "lcc").tolist()
[[1, 1, 0, 0, 0], [1, 1, 0, 2, 0]]
>>> postprocess(labels, "none") is labels
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

from imaseg.utils.checks import check_choice

__all__ = [
    "COMPONENTS_KEPT",
    "POSTPROCESS_HELP",
    "POSTPROCESSORS",
    "check_postprocess",
    "keep_largest_components",
    "postprocess",
]

LabelMap = TypeVar("LabelMap", np.ndarray, torch.Tensor)

POSTPROCESS_HELP = (
    "post-processing of the predicted label maps: none (the network's argmax) or lcc (per foreground class, keep "
    "only the largest connected component, 3D for volumes and 2D for 2D images, so spurious islands become "
    'background; MONAI\'s KeepLargestConnectedComponent; needs scikit-image: pip install "imaseg[lcc]"). Attacks '
    "still optimise the raw logits; only the written and scored masks change"
)

INSTALL_HINT = 'pip install "imaseg[lcc]"'


def _identity(labels: np.ndarray) -> np.ndarray:
    return labels


def keep_largest_components(labels: np.ndarray, components: int = 1) -> np.ndarray:
    """One label map ``(*spatial)`` with, per foreground class present, only its ``components`` largest connected
    components."""
    from monai.transforms import KeepLargestConnectedComponent

    classes = [int(c) for c in np.unique(labels) if c > 0]
    if not classes:
        return labels
    transform = KeepLargestConnectedComponent(
        applied_labels=classes, is_onehot=False, independent=True, num_components=components
    )
    kept = transform(torch.from_numpy(np.array(labels, copy=True)[None]))  # a copy: MONAI edits it in place
    return np.asarray(kept[0], dtype=labels.dtype)


def _keep_two_largest(labels: np.ndarray) -> np.ndarray:
    return keep_largest_components(labels, 2)


POSTPROCESSORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": _identity,
    "lcc": keep_largest_components,
    "lcc2": _keep_two_largest,
}
COMPONENTS_KEPT = {"lcc": 1, "lcc2": 2}
"""How many components per class each connected-component post-processor keeps (the bundle's transform reads it)."""
NEEDS_SKIMAGE = frozenset(COMPONENTS_KEPT)


def check_postprocess(name: str) -> str:
    """The registered name (lower case); raises ``ValueError`` for an unknown one, or one whose package is missing
    (naming the install command), before any model is loaded."""
    key = check_choice("postprocess", name, POSTPROCESSORS)
    if key in NEEDS_SKIMAGE:
        try:
            import skimage.measure  # noqa: F401  (MONAI's connected components run on it on the CPU)
        except ImportError:
            raise ValueError(
                f"`postprocess` {key!r} needs scikit-image, which is not installed: {INSTALL_HINT} "
                "(or pip install scikit-image)"
            ) from None
    return key


def postprocess(labels: LabelMap, name: str, *, spatial_dims: int | None = None) -> LabelMap:
    """``labels`` after the post-processor ``name``: the same type, dtype, device and shape.

    Args:
        labels: class indices ``(*spatial)``, or ``(B, *spatial)`` with ``spatial_dims`` given (each map
            processed on its own).
        name: a key of :data:`POSTPROCESSORS`.
        spatial_dims: the number of trailing spatial axes; ``None``: every axis is spatial (one map).

    ``none`` returns ``labels`` itself.
    """
    key = check_postprocess(name)
    if key == "none":
        return labels
    dims = labels.ndim if spatial_dims is None else spatial_dims
    if dims not in (2, 3) or labels.ndim < dims:
        raise ValueError(f"`labels` must have 2 or 3 spatial axes, got shape {tuple(labels.shape)} ({dims} spatial)")
    array = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    maps = array.reshape(-1, *array.shape[array.ndim - dims :])
    result = np.stack([POSTPROCESSORS[key](m) for m in maps]).reshape(array.shape)
    if isinstance(labels, torch.Tensor):
        return torch.from_numpy(result).to(device=labels.device, dtype=labels.dtype)
    return result
