"""Segmentation metrics that every layer shares (hard Dice counting, class prediction)."""

from imaseg.metrics.dice import confusion_counts, dice_from_counts, sample_dice
from imaseg.metrics.prediction import predict_classes

__all__ = ["confusion_counts", "dice_from_counts", "predict_classes", "sample_dice"]
