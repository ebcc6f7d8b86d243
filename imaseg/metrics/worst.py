"""The worst case over several attacks, chosen so that the headline number is honest.

Reports lead with *global* Dice (tp / fp / fn summed over every voxel of every case, then the mean over
classes). Picking, per slice, the member with the lowest *slice* Dice does not minimise that: a slice
where one member wipes out a small structure can cost less global Dice than a slice where another adds
a large false positive, so the "worst case" could score above one of its members. :func:`choose_worst`
starts from the member with the lowest global Dice and then, sample by sample, switches to another
member's prediction whenever that lowers the global Dice. The result is never above any member's.
"""

from __future__ import annotations

import numpy as np

__all__ = ["choose_worst", "mean_global_dice"]


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
