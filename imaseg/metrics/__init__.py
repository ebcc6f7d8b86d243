"""Segmentation metrics that every layer shares (hard Dice counting, class prediction).

The torch-based names load on first use, so the numpy-only modules (``imaseg.metrics.bootstrap``,
``imaseg.metrics.worst``) import without torch: study reports render from records files alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imaseg.metrics.dice import confusion_counts, dice_from_counts, sample_dice
    from imaseg.metrics.prediction import predict_classes

__all__ = ["confusion_counts", "dice_from_counts", "predict_classes", "sample_dice"]

_EXPORTS = {
    "confusion_counts": "imaseg.metrics.dice",
    "dice_from_counts": "imaseg.metrics.dice",
    "sample_dice": "imaseg.metrics.dice",
    "predict_classes": "imaseg.metrics.prediction",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imaseg.metrics' has no attribute {name!r}")
