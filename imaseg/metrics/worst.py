"""The worst case over several attacks, chosen so that the headline number is honest.

Reports lead with *global* Dice (tp / fp / fn summed over every voxel of every case, then the mean over
classes). Picking, per slice, the member with the lowest *slice* Dice does not minimise that: a slice
where one member wipes out a small structure can cost less global Dice than a slice where another adds
a large false positive, so the "worst case" could score above one of its members. :func:`choose_worst`
starts from the member with the lowest global Dice and then, sample by sample, switches to another
member's prediction whenever that lowers the global Dice. The result is never above any member's.

The numpy Dice aggregations of counts live here too: global (:func:`mean_global_dice`) and the per-case mean
(:func:`case_class_dice`, :func:`mean_case_dice`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["COUNT_AGGREGATIONS", "case_class_dice", "choose_worst", "mean_case_dice", "mean_global_dice"]

# what per-case [tp, fp, fn] counts give: Dice of the pooled counts, mean per-case Dice
# (imaseg.evaluation.AGGREGATIONS adds the per-slice mean, which needs per-slice counts)
COUNT_AGGREGATIONS = ("global", "case")


def mean_global_dice(totals: np.ndarray) -> np.ndarray:
    """Mean over classes of ``2 tp / (2 tp + fp + fn)`` for ``(..., C, 3)`` summed counts; NaN when no class
    occurs at all.

    >>> float(mean_global_dice(np.array([[2, 1, 1], [0, 0, 0]])))
    0.6666666666666666
    """
    tp, fp, fn = totals[..., 0], totals[..., 1], totals[..., 2]
    denominator = 2 * tp + fp + fn
    dice = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), np.nan)
    present = denominator > 0
    count = present.sum(-1)
    return np.where(count > 0, np.where(present, dice, 0).sum(-1) / np.maximum(count, 1), np.nan)


def case_class_dice(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each case's Dice per class for ``(..., C, 3)`` counts of single cases, and where it is defined: the *case*
    aggregation (a class counts for a case when its label has it, MONAI's ``ignore_empty``; the case mean is, per
    class, the mean over the cases defining it, then the mean over classes). Returns ``(dice, defined)``, both
    ``(..., C)`` floats, the Dice 0 where undefined, so that sums over cases give the numerator and denominator.

    >>> dice, defined = case_class_dice(np.array([[2, 1, 1], [0, 4, 0]]))  # the label lacks class 2
    >>> dice.tolist(), defined.tolist()
    ([0.6666666666666666, 0.0], [1.0, 0.0])
    """
    counts = np.asarray(counts, dtype=float)
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    defined = tp + fn > 0  # the class is in the label
    dice = np.where(defined, 2 * tp / np.maximum(2 * tp + fp + fn, 1e-12), 0.0)
    return dice, defined.astype(float)


def mean_case_dice(dice: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """The case mean from sums over cases of :func:`case_class_dice`'s ``(..., C)`` ``dice`` and ``defined``: per
    class the mean over the cases defining it, then the mean over the classes some case defines (NaN if none).

    >>> float(mean_case_dice(np.array([1.5, 0.0]), np.array([2.0, 0.0])))
    0.75
    """
    has_class = defined > 0
    per_class = np.where(has_class, dice / np.maximum(defined, 1e-12), 0.0)
    count = has_class.sum(-1)
    return np.where(count > 0, per_class.sum(-1) / np.maximum(count, 1), np.nan)


def choose_worst(counts: np.ndarray, passes: int = 2) -> np.ndarray:
    """Per sample, the member whose prediction to take, ``(S,)``.

    Args:
        counts: ``(M, S, C, 3)``: per member, sample and foreground class, ``[tp, fp, fn]``.
        passes: sweeps over the samples (a second one rarely changes anything).

    The global Dice of the choice is at most the lowest global Dice of any single member.

    >>> a = np.array([[[1, 0, 9]], [[90, 0, 10]]])  # member a: slice 0 erased, slice 1 nearly right
    >>> b = np.array([[[9, 0, 1]], [[50, 0, 50]]])  # member b: the other way round
    >>> choose_worst(np.stack([a, b])).tolist()
    [0, 1]
    """
    counts = np.asarray(counts, dtype=float)
    members, samples = counts.shape[:2]
    member_totals = counts.sum(1)
    start = int(np.argmin(np.nan_to_num(mean_global_dice(member_totals), nan=np.inf)))
    choice = np.full(samples, start, dtype=np.int64)
    totals = member_totals[start].copy()
    for _ in range(passes):
        changed = False
        for s in range(samples):
            candidates = totals[None] - counts[choice[s], s][None] + counts[:, s]  # (M, C, 3)
            scores = np.nan_to_num(mean_global_dice(candidates), nan=np.inf)
            best = int(np.argmin(scores))
            if scores[best] < scores[choice[s]] - 1e-12:
                totals, choice[s], changed = candidates[best], best, True
        if not changed:
            break
    return choice
