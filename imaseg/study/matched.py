"""Does a configuration beat the reference method's frontier at its own clean Dice?

The reference method's frontier is the Pareto front of its configurations (clean Dice against Dice at the
report's budget). Where a configuration's clean Dice lies between two front points, the reference is their
mixture that has exactly that clean Dice: the per-case counts ``w * a + (1 - w) * b``, the expected counts of
a model that uses ``a`` with probability ``w``. Comparing with the nearest point alone would flatter the
candidate wherever the front is steep. Outside the front's range the reference is its nearer end, and the
clean Dice gap says whether the two are matched at all. The weight matches global (pooled) clean Dice, and the
verdict reads global Dice; the same reference counts also give the differences in mean per-case Dice (the
case Dice of the mixed counts, not the mixture of the two settings' case Dice: Dice is not linear in the counts
of one case, so the two differ slightly; on the ACDC frontier study by under 0.001)
(:func:`imaseg.metrics.bootstrap.paired_bootstrap_difference` with ``aggregation="case"``), beside them. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from imaseg.metrics.bootstrap import paired_bootstrap_difference
from imaseg.metrics.worst import mean_global_dice
from imaseg.study.report_config import Comparison

__all__ = ["Counts", "matched", "pareto_front"]

Counts = dict[str, dict[str, np.ndarray]]  # key ("clean", "1", ...) -> case -> (C, 3) counts


def pareto_front(methods: dict, settings: list[str], budget: str) -> list[str]:
    """``settings`` on the front, cleanest first: each more robust at ``budget`` than every cleaner one."""
    front: list[str] = []
    for setting in sorted(settings, key=lambda s: -methods[s]["clean"]["dice"]):
        if not front or methods[setting][budget]["dice"] > methods[front[-1]][budget]["dice"]:
            front.append(setting)
    return front


def _mix(a: Counts, b: Counts, weight: float, budget: str) -> Counts:
    return {k: {c: weight * a[k][c] + (1 - weight) * b[k][c] for c in a[k]} for k in ("clean", budget)}


def _mixture_at(a: Counts, b: Counts, clean: float, budget: str) -> tuple[Counts, float]:
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
    return _mix(a, b, (low + high) / 2, budget), (low + high) / 2


def _reference(
    counts: dict[str, Counts], methods: dict, front: list[str], clean: float, budget: str
) -> tuple[str, Counts]:
    """The front's point at clean Dice ``clean``: a mixture of the two bracketing settings, or the nearer end."""
    for cleaner, next_one in zip(front, front[1:], strict=False):
        if methods[next_one]["clean"]["dice"] <= clean <= methods[cleaner]["clean"]["dice"]:
            mixture, weight = _mixture_at(counts[cleaner], counts[next_one], clean, budget)
            return f"{weight:.2f} x {cleaner} + {1 - weight:.2f} x {next_one}", mixture
    end = front[0] if clean > methods[front[0]]["clean"]["dice"] else front[-1]
    return end, counts[end]


def _verdict(gap: dict, gain: dict, compare: Comparison, budget: str) -> str:
    if abs(gap["difference"]) > compare.clean_within:
        return f"no: clean Dice {gap['difference']:+.3f}, not within {compare.clean_within}"
    if gain["difference"] < compare.gain or gain["low"] <= 0:
        return f"no: eps {budget} {gain['difference']:+.3f}, not >= +{compare.gain} with its CI above 0"
    return "yes"


def matched(
    counts: dict[str, Counts], methods: dict, patients: Mapping[str, str], compare: Comparison, budget: str
) -> list[dict]:
    """Every configuration of ``compare.method`` against the front of ``compare.against`` (its configurations on
    the same folds) at the configuration's clean Dice: the reference, the paired differences in global Dice
    (``"clean"`` and ``budget``) with 95% intervals over ``patients``, the verdict of ``compare.clean_within`` and
    ``compare.gain`` on them, and the paired differences in mean per-case Dice against the same reference counts
    (``"clean_case"`` and ``f"{budget}_case"``)."""
    rows = []
    for setting in [s for s in methods if methods[s]["method"] == compare.method]:
        folds = methods[setting]["folds"]
        candidates = [s for s in methods if methods[s]["method"] == compare.against and methods[s]["folds"] == folds]
        front = pareto_front(methods, candidates, budget)
        if not front:
            continue
        name, reference = _reference(counts, methods, front, methods[setting]["clean"]["dice"], budget)
        mine = counts[setting]
        gap, gain = (paired_bootstrap_difference(mine[k], reference[k], patients) for k in ("clean", budget))
        verdict = _verdict(gap, gain, compare, budget)
        per_case = {
            f"{k}_case": paired_bootstrap_difference(mine[k], reference[k], patients, aggregation="case")
            for k in ("clean", budget)
        }
        row = {"setting": setting, "reference": name, "clean": gap, budget: gain, "dominates": verdict}
        rows.append({**row, **per_case})
    return rows
