"""Bootstrap confidence intervals over patients for global Dice, alone and paired between two models.

Cases of one patient (two cardiac phases, slices of one volume) are not independent, so patients are the
resampling unit: each replicate draws patients with replacement, sums the tp / fp / fn of their cases, and
recomputes the global Dice (mean over classes). A paired interval draws the same patients for both models,
so what the patients share cancels out of the difference; :func:`paired_bootstrap_difference` does the
same for the mean per-case Dice with ``aggregation="case"`` (:func:`imaseg.metrics.worst.case_class_dice`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from imaseg.metrics.worst import COUNT_AGGREGATIONS, case_class_dice, mean_case_dice, mean_global_dice

__all__ = ["bootstrap_auc", "bootstrap_dice", "paired_bootstrap_difference"]


def _patient_totals(counts: Mapping[str, np.ndarray], patients: Mapping[str, str]) -> tuple[list[str], np.ndarray]:
    """``(patients, (P, C, 3))``: per patient, the summed ``[tp, fp, fn]`` per class of their cases."""
    names = sorted({patients[c] for c in counts})
    index = {p: i for i, p in enumerate(names)}
    first = np.asarray(next(iter(counts.values())), dtype=float)
    totals = np.zeros((len(names), *first.shape), dtype=float)
    for case, value in counts.items():
        totals[index[patients[case]]] += np.asarray(value, dtype=float)
    return names, totals


def bootstrap_dice(
    counts: Mapping[str, np.ndarray],
    patients: Mapping[str, str],
    *,
    replicates: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The ``level`` percentile interval of global Dice over patients.

    Args:
        counts: per case, ``(C, 3)`` summed ``[tp, fp, fn]`` per foreground class.
        patients: case -> patient (the resampling unit).

    >>> counts = {"p1a": [[8, 1, 1]], "p1b": [[7, 2, 1]], "p2a": [[5, 3, 2]], "p3a": [[9, 0, 1]]}
    >>> patients = {"p1a": "p1", "p1b": "p1", "p2a": "p2", "p3a": "p3"}
    >>> lo, hi = bootstrap_dice(counts, patients, replicates=500)
    >>> 0.6 < lo < 0.83 < hi < 0.95
    True
    """
    _, totals = _patient_totals(counts, patients)
    draws = np.random.default_rng(seed).integers(0, len(totals), size=(replicates, len(totals)))
    return _interval(mean_global_dice(totals[draws].sum(1)), level)


def _per_patient(counts: Mapping[str, np.ndarray], patients: Mapping[str, str], aggregation: str) -> np.ndarray:
    """Per patient, what the ``aggregation``'s Dice sums over: ``(P, C, 3)`` counts (global) or ``(P, C, 2)``
    summed case Dice and cases defining each class (case)."""
    if aggregation == "case":
        counts = {c: np.stack(case_class_dice(np.asarray(v)), -1) for c, v in counts.items()}
    return _patient_totals(counts, patients)[1]


def _score(totals: np.ndarray, aggregation: str) -> np.ndarray:
    return mean_case_dice(totals[..., 0], totals[..., 1]) if aggregation == "case" else mean_global_dice(totals)


def paired_bootstrap_difference(
    first: Mapping[str, np.ndarray],
    second: Mapping[str, np.ndarray],
    patients: Mapping[str, str],
    *,
    aggregation: str = "global",
    replicates: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Dice of ``first`` minus ``second`` on the same cases: the difference and its paired interval, the same
    patients drawn for both. ``aggregation``: ``global`` (pooled counts) or ``case`` (mean per-case Dice: per
    class the mean over the cases whose label has it, then the mean over classes), on the same draws.

    >>> first = {"p1a": [[8, 1, 1]], "p1b": [[2, 0, 2]], "p2a": [[5, 0, 0]]}
    >>> second = {"p1a": [[8, 1, 1]], "p1b": [[2, 2, 0]], "p2a": [[4, 1, 1]]}
    >>> patients = {"p1a": "p1", "p1b": "p1", "p2a": "p2"}
    >>> pair = paired_bootstrap_difference(first, second, patients, aggregation="case")
    >>> round(pair["difference"], 4), round(pair["low"], 4), round(pair["high"], 4)  # p1 0, p2 1 - 0.8
    (0.0667, 0.0, 0.2)
    """
    if aggregation not in COUNT_AGGREGATIONS:
        raise ValueError(f"`aggregation` must be one of {COUNT_AGGREGATIONS}, got {aggregation!r}")
    shared: Sequence[str] = sorted(set(first) & set(second))
    if not shared:
        raise ValueError("the two evaluations share no case; a paired interval needs the same cases")
    a, b = (_per_patient({c: x[c] for c in shared}, patients, aggregation) for x in (first, second))
    draws = np.random.default_rng(seed).integers(0, len(a), size=(replicates, len(a)))
    low, high = _interval(_score(a[draws].sum(1), aggregation) - _score(b[draws].sum(1), aggregation), level)
    difference = float(_score(a.sum(0), aggregation) - _score(b.sum(0), aggregation))
    return {"difference": difference, "low": low, "high": high}


def bootstrap_auc(
    counts: Mapping[float, Mapping[str, np.ndarray]],
    patients: Mapping[str, str],
    *,
    replicates: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The area under global Dice against eps (trapezoid over the budgets divided by their span, the ``auc`` of
    ``summary.json``: the mean Dice over the range) and its ``level`` interval over patients.

    Args:
        counts: per budget eps, per case ``(C, 3)`` summed ``[tp, fp, fn]``; every budget holds the same cases.
        patients: case -> patient; each replicate draws the same patients at every budget.

    Returns:
        ``(auc, low, high)``.

    >>> counts = {0.5: {"a": [[8, 1, 1]], "b": [[6, 2, 2]]}, 1.0: {"a": [[4, 3, 3]], "b": [[2, 4, 4]]}}
    >>> auc, low, high = bootstrap_auc(counts, {"a": "a", "b": "b"}, replicates=200)
    >>> round(auc, 3), low <= auc <= high
    (0.643, True)
    """
    budgets = sorted(counts)
    if len(budgets) < 2:
        raise ValueError(f"an area under Dice-vs-eps needs at least two budgets, got {len(budgets)}")
    cases = set(counts[budgets[0]])
    for eps in budgets[1:]:
        if set(counts[eps]) != cases:
            raise ValueError(
                f"budget {eps:g} holds other cases than budget {budgets[0]:g}; every budget needs the same"
            )
    totals = [_patient_totals(counts[eps], patients)[1] for eps in budgets]
    draws = np.random.default_rng(seed).integers(0, len(totals[0]), size=(replicates, len(totals[0])))
    span = budgets[-1] - budgets[0]
    curves = np.stack([mean_global_dice(t[draws].sum(1)) for t in totals], axis=-1)
    point = np.trapezoid([mean_global_dice(t.sum(0)) for t in totals], budgets) / span
    low, high = _interval(np.trapezoid(curves, budgets, axis=-1) / span, level)
    return float(point), low, high


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates (NaN replicates ignored)."""
    tail = (1 - level) / 2 * 100
    return float(np.nanpercentile(values, tail)), float(np.nanpercentile(values, 100 - tail))
