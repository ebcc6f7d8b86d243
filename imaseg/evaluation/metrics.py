"""Per-case metrics (MONAI's DiceMetric and 95th-percentile Hausdorff distance) and the aggregations.

Three Dice aggregations differ by up to 0.11 on the real heart set, so every number says which it is:

- ``global``: one Dice per class from tp / fp / fn summed over every voxel of every case (what the
  official IMA evaluation calls voxel Dice);
- ``case``: the mean over cases of each case's Dice (a case without the class in ground truth is
  skipped for that class);
- ``slice``: the mean over 2D slices of each slice's Dice, counting a slice for a class when the class
  is in its ground truth or its prediction.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import DiceMetric, HausdorffDistanceMetric

from imaseg.metrics.dice import confusion_counts

__all__ = ["AGGREGATIONS", "aggregate_dice", "case_metrics", "slice_counts"]

AGGREGATIONS = ("global", "case", "slice")


def _onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).movedim(-1, 0)[None].float()


def case_metrics(pred: torch.Tensor, label: torch.Tensor, num_classes: int, *, spacing=None, hd95: bool = True) -> dict:
    """Dice (MONAI ``DiceMetric``, NaN where the class is absent from the ground truth), HD95 (mm of
    ``spacing``; the image diagonal for a structure erased or made up, NaN when absent from both) and
    tp / fp / fn per foreground class, for one whole case."""
    pred_oh, label_oh = _onehot(pred, num_classes), _onehot(label, num_classes)
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=True)(pred_oh, label_oh)[0]
    out = {"dice": [float(v) for v in dice]}
    if hd95:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI warns for empty prediction or ground truth
            metric = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")
            values = metric(pred_oh, label_oh, spacing=list(spacing) if spacing is not None else None)[0]
        out["hd95"] = _penalised_hd95(values, pred, label, num_classes, spacing)
    else:
        out["hd95"] = [float("nan")] * (num_classes - 1)
    tp, fp, fn = confusion_counts(pred[None], label[None], num_classes)
    out.update(tp=tp[0, 1:].tolist(), fp=fp[0, 1:].tolist(), fn=fn[0, 1:].tolist())
    return out


def _penalised_hd95(values, pred: torch.Tensor, label: torch.Tensor, num_classes: int, spacing) -> list[float]:
    """HD95 per class; a structure present in only one of prediction and ground truth (erased, or made up)
    scores the image diagonal in mm, as segmentation challenges do; absent from both: NaN (undefined)."""
    steps = np.asarray(spacing if spacing is not None else [1.0] * label.dim(), dtype=float)[: label.dim()]
    diagonal = float(np.sqrt(np.sum((np.asarray(label.shape, dtype=float) * steps) ** 2)))
    out = []
    for c in range(1, num_classes):
        in_truth, in_prediction = bool((label == c).any()), bool((pred == c).any())
        if in_truth != in_prediction:
            out.append(diagonal)
        elif not in_truth:
            out.append(float("nan"))
        else:
            value = float(values[c - 1])
            out.append(value if math.isfinite(value) else diagonal)
    return out


def slice_counts(pred_slices: torch.Tensor, label_slices: torch.Tensor, num_classes: int) -> list:
    """Per slice, per foreground class ``[tp, fp, fn]``: a ``(S, C-1, 3)`` nested list."""
    tp, fp, fn = confusion_counts(pred_slices, label_slices, num_classes)
    return torch.stack([tp[:, 1:], fp[:, 1:], fn[:, 1:]], -1).tolist()


def aggregate_dice(cases: Mapping[Any, dict]) -> dict[str, list[float]]:
    """Per foreground class Dice under each aggregation, plus the per-case spread (std)."""
    tp = np.sum([c["tp"] for c in cases.values()], axis=0).astype(float)
    fp = np.sum([c["fp"] for c in cases.values()], axis=0).astype(float)
    fn = np.sum([c["fn"] for c in cases.values()], axis=0).astype(float)
    denominator = 2 * tp + fp + fn
    global_dice = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)
    per_case = np.array([c["dice"] for c in cases.values()], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (a class absent everywhere)
        case_mean = np.nanmean(per_case, axis=0)
        case_std = np.nanstd(per_case, axis=0)
        slices = [s for c in cases.values() for s in c.get("slices", [])]
        if slices:
            counts = np.array(slices, dtype=float)  # (S, C-1, 3)
            denominator = 2 * counts[..., 0] + counts[..., 1] + counts[..., 2]
            per_slice = np.where(denominator > 0, 2 * counts[..., 0] / np.maximum(denominator, 1), np.nan)
            slice_mean = np.nanmean(per_slice, axis=0)
        else:
            slice_mean = np.full_like(case_mean, np.nan)
    return {
        "global": global_dice.tolist(),
        "case": case_mean.tolist(),
        "case_std": case_std.tolist(),
        "slice": slice_mean.tolist(),
    }
