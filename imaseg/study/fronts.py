"""A configuration against named fronts at matched clean Dice, on endpoints of its Dice-vs-eps curve, with
intervals over patients and training seeds.

A front is a list of configurations, joined in order of clean Dice by straight lines. The reference at the
candidate's clean Dice is read off the segment that brackets it (never extrapolated); a candidate cleaner than
the front's cleanest end is compared with that end (it gives up no clean Dice: a gain there is dominance), one
within ``clean_within`` below its least clean end with that end, and one further below is not compared. Each
bootstrap replicate (:func:`imaseg.study.units.crossed_draws`: patients and seeds drawn independently) recomputes every
configuration's clean Dice and endpoint on the same draw and reads the reference off the same segment, so the
interval of the difference holds both the spread over patients and over training runs. Endpoints:

- ``auc``: the area under Dice against eps over ``0..max eps``, clean Dice at eps 0, divided by the span;
- ``auc_attacked``: the same over the attacked budgets only (``summary.json``'s ``auc``, the IMA study's
  development choice);
- a budget (``"1"``, ``"2"``, as records spell them): Dice at that eps.

No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from imaseg.study.units import UnitCounts

__all__ = ["FrontComparison", "compare_to_front", "endpoint_values"]


def endpoint_values(curves: np.ndarray, keys: Sequence[str], endpoint: str) -> np.ndarray:
    """``(R, K)`` Dice per key -> ``(R,)`` values of ``endpoint`` (``"clean"``, ``"auc"``, ``"auc_attacked"`` or a
    budget key)."""
    if endpoint in ("auc", "auc_attacked"):
        attacked = sorted((float(k), keys.index(k)) for k in keys if k != "clean")
        if endpoint == "auc":
            attacked = [(0.0, keys.index("clean")), *attacked]
        if len(attacked) < 2:
            raise ValueError(f"{endpoint} needs at least two budgets, got {len(attacked)}")
        eps = np.asarray([e for e, _ in attacked])
        return np.trapezoid(curves[:, [i for _, i in attacked]], eps, axis=-1) / (eps[-1] - eps[0])
    if endpoint not in keys:
        raise ValueError(f"endpoint {endpoint!r} is not among the records' keys {list(keys)}, 'auc' or 'auc_attacked'")
    return curves[:, keys.index(endpoint)]


@dataclass(frozen=True)
class FrontComparison:
    """The candidate minus the front's reference at the candidate's clean Dice (``compared`` False: not comparable).

    ``clipped`` is the share of replicates whose clean Dice fell outside the segment (read at its nearer end, never
    extrapolated); ``undefined`` the share whose difference was NaN (nothing drawn defined a class)."""

    front: str
    reference: str  # e.g. "0.40 x pgd-at eps 3 + 0.60 x pgd-at eps 4", or why there is none
    compared: bool
    clean_gap: float  # candidate clean minus the reference's clean (0 inside the front's range)
    difference: float
    low: float
    high: float
    clipped: float = 0.0
    undefined: float = 0.0

    def meets(self, gain: float) -> bool:
        """At least ``gain`` above the front with the interval above 0."""
        return self.compared and self.difference >= gain and self.low > 0


def _interval(values: np.ndarray, level: float) -> tuple[float, float]:
    if np.isnan(values).all():
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _check_units(candidate: UnitCounts, front: Mapping[str, UnitCounts], name: str) -> None:
    if not front:
        raise ValueError(f"front {name!r} has no configuration")
    mine = (candidate.patients, candidate.seeds, candidate.keys)
    for setting, counts in front.items():
        if (counts.patients, counts.seeds, counts.keys) != mine or not np.array_equal(
            counts.present, candidate.present
        ):
            raise ValueError(
                f"{setting}: other patients, seeds, units or budgets than the candidate; a paired comparison needs the "
                "same (are cells missing?)"
            )


def compare_to_front(
    candidate: UnitCounts,
    front: Mapping[str, UnitCounts],
    *,
    name: str,
    endpoint: str,
    aggregation: str,
    weights: np.ndarray,
    clean_within: float = 0.01,
    level: float = 0.95,
) -> FrontComparison:
    """``candidate`` against the ``front`` (configuration name -> counts), all on the same units.

    Where the candidate's clean Dice lies between two of the front's points, the reference is read off their
    segment; beyond the front's cleanest end the reference is that end (the candidate gives up no clean Dice, so a
    gain there is dominance); within ``clean_within`` below its least clean end, that end; further below, not compared.

    Args:
        weights: ``(1 + R, P, S)`` unit weights, row 0 the point estimate (:func:`crossed_draws`).

    Raises:
        ValueError: an empty front, or configurations on other patients, seeds, units or keys than the candidate.
    """
    _check_units(candidate, front, name)
    keys = candidate.keys
    curves = {s: c.curves(weights, aggregation) for s, c in front.items()}
    own_curve = candidate.curves(weights, aggregation)
    clean = {s: endpoint_values(v, keys, "clean") for s, v in curves.items()}
    value = {s: endpoint_values(v, keys, endpoint) for s, v in curves.items()}
    own_clean, own_value = endpoint_values(own_curve, keys, "clean"), endpoint_values(own_curve, keys, endpoint)
    order = sorted(front, key=lambda s: -clean[s][0])  # cleanest first
    c = own_clean[0]
    for cleaner, next_one in zip(order, order[1:], strict=False):
        if clean[next_one][0] <= c <= clean[cleaner][0]:
            span = clean[cleaner] - clean[next_one]
            raw = np.where(span > 0, (own_clean - clean[next_one]) / np.where(span > 0, span, 1), 0.5)
            weight = np.clip(raw, 0.0, 1.0)
            reference = weight * value[cleaner] + (1 - weight) * value[next_one]
            label = f"{weight[0]:.2f} x {cleaner} + {1 - weight[0]:.2f} x {next_one}"
            clipped = float(np.mean((raw[1:] != weight[1:]) | (span[1:] <= 0)))
            return _result(name, label, 0.0, own_value - reference, level, clipped)
    if c > clean[order[0]][0]:
        end, gap = order[0], float(c - clean[order[0]][0])
    else:
        end, gap = order[-1], float(c - clean[order[-1]][0])
        if -gap > clean_within:
            low, high = clean[order[-1]][0], clean[order[0]][0]
            why = (
                f"not comparable: clean Dice below the front's range {low:.3f}..{high:.3f} by more than {clean_within}"
            )
            return FrontComparison(name, why, False, gap, float("nan"), float("nan"), float("nan"))
    return _result(name, end, gap, own_value - value[end], level, 0.0)


def _result(name: str, label: str, gap: float, difference: np.ndarray, level: float, clipped: float) -> FrontComparison:
    low, high = _interval(difference[1:], level)
    undefined = float(np.mean(np.isnan(difference[1:])))
    return FrontComparison(name, label, True, gap, float(difference[0]), low, high, clipped, undefined)
