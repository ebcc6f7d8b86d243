"""Segmentation metrics that every layer shares (hard Dice counting)."""

from imaseg.metrics.dice import confusion_counts, dice_from_counts, sample_dice

__all__ = ["confusion_counts", "dice_from_counts", "sample_dice"]
