"""Issue 13's first target, setting by setting: does an IMA setting beat PGD-AT's frontier at its own clean Dice?

PGD-AT's frontier is the Pareto front of its settings (clean Dice against Dice at eps 1). Where an IMA setting's
clean Dice lies between two front points, the reference is their mixture that has exactly that clean Dice: the
per-case counts ``w * a + (1 - w) * b``, the expected counts of a model that uses ``a`` with probability ``w``.
Comparing with the nearest point alone would flatter IMA wherever the front is steep. Outside the front's range
the reference is its nearer end, and the clean Dice gap says whether the two are matched at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from imaseg.metrics.bootstrap import paired_bootstrap_difference
from imaseg.metrics.worst import mean_global_dice

__all__ = ["MATCHED_CLEAN", "TARGET_GAIN", "matched", "pareto_front"]

MATCHED_CLEAN = 0.01  # target 1: at clean Dice within 0.01 of PGD-AT's frontier ...
TARGET_GAIN = 0.03  # ... IMA at least 0.03 higher at eps 1, with the paired interval above 0

Counts = dict[str, dict[str, np.ndarray]]  # key ("clean", "1", ...) -> case -> (C, 3) counts


def pareto_front(methods: dict, settings: list[str]) -> list[str]:
    """``settings`` on the front, cleanest first: each more robust at eps 1 than every cleaner one."""
    front: list[str] = []
    for setting in sorted(settings, key=lambda s: -methods[s]["clean"]["dice"]):
        if not front or methods[setting]["1"]["dice"] > methods[front[-1]]["1"]["dice"]:
            front.append(setting)
    return front


def _mix(a: Counts, b: Counts, weight: float) -> Counts:
    return {k: {c: weight * a[k][c] + (1 - weight) * b[k][c] for c in a[k]} for k in ("clean", "1")}


def _mixture_at(a: Counts, b: Counts, clean: float) -> tuple[Counts, float]:
    """The mixture of ``a`` (cleaner) and ``b`` whose pooled clean Dice is ``clean``, by bisection on the weight
    (the pooled counts of a mixture are the mixture of the pooled counts, so each step costs one Dice)."""
    total_a, total_b = (np.sum(list(x["clean"].values()), axis=0) for x in (a, b))
    low, high = 0.0, 1.0
    for _ in range(40):
        weight = (low + high) / 2
        if float(mean_global_dice(weight * total_a + (1 - weight) * total_b)) > clean:
            high = weight
        else:
            low = weight
    return _mix(a, b, (low + high) / 2), (low + high) / 2


def _reference(counts: dict[str, Counts], methods: dict, front: list[str], clean: float) -> tuple[str, Counts]:
    """The front's point at clean Dice ``clean``: a mixture of the two bracketing settings, or the nearer end."""
    for cleaner, next_one in zip(front, front[1:], strict=False):
        if methods[next_one]["clean"]["dice"] <= clean <= methods[cleaner]["clean"]["dice"]:
            mixture, weight = _mixture_at(counts[cleaner], counts[next_one], clean)
            return f"{weight:.2f} x {cleaner} + {1 - weight:.2f} x {next_one}", mixture
    end = front[0] if clean > methods[front[0]]["clean"]["dice"] else front[-1]
    return end, counts[end]


def matched(
    counts: dict[str, Counts], methods: dict, patients: Callable[[Iterable[str]], dict[str, str]]
) -> list[dict]:
    """Every IMA setting against PGD-AT's frontier (its settings on the same folds) at the IMA setting's clean
    Dice: the reference, the paired differences (clean, eps 1) with 95% intervals over ``patients(cases)``, and
    the verdict."""
    rows = []
    for setting in [s for s in methods if s.startswith("ima")]:
        folds = methods[setting]["folds"]
        front = pareto_front(methods, [s for s in methods if s.startswith("pgd-at") and methods[s]["folds"] == folds])
        if not front:
            continue
        name, reference = _reference(counts, methods, front, methods[setting]["clean"]["dice"])
        mine = counts[setting]
        groups = patients(mine["clean"])
        gap, gain = (paired_bootstrap_difference(mine[k], reference[k], groups) for k in ("clean", "1"))
        if abs(gap["difference"]) > MATCHED_CLEAN:
            verdict = f"no: clean Dice {gap['difference']:+.3f}, not within {MATCHED_CLEAN}"
        elif gain["difference"] < TARGET_GAIN or gain["low"] <= 0:
            verdict = f"no: eps 1 {gain['difference']:+.3f}, not >= +{TARGET_GAIN} with its CI above 0"
        else:
            verdict = "yes"
        rows.append({"setting": setting, "reference": name, "clean": gap, "1": gain, "dominates": verdict})
    return rows
