"""A candidate against a named front at matched clean Dice: the segment read, the ends, what is not compared."""

from __future__ import annotations

import numpy as np
import pytest

from imaseg.study.fronts import compare_to_front, endpoint_values
from imaseg.study.units import crossed_draws, unit_counts

PATIENTS = {f"c{i}": f"p{i}" for i in range(6)}


def _counts(dice: float) -> list:
    """One class whose Dice is exactly ``dice``: tp = 50 d, fp = fn = 50 (1 - d)."""
    return [[50 * dice, 50 * (1 - dice), 50 * (1 - dice)]]


def _units(clean: float, eps1: float, eps2: float, spread: float = 0.0):
    """Every patient the same (``spread`` 0) or eps 1 Dice moving by +-``spread`` across patients."""
    cases = {f"c{i}": (clean, eps1 + spread * (-1) ** i, eps2) for i in range(6)}
    counts = {
        "clean": {c: _counts(v[0]) for c, v in cases.items()},
        "1": {c: _counts(v[1]) for c, v in cases.items()},
        "2": {c: _counts(v[2]) for c, v in cases.items()},
    }
    return unit_counts([{"setting": "x", "fold": 3, "seed": 0, "counts": counts}], PATIENTS)


WEIGHTS = crossed_draws(6, 1, replicates=400)


def test_endpoint_values_auc_counts_clean_dice_at_eps_0():
    curves = np.array([[0.6, 0.8, 0.2]])
    assert endpoint_values(curves, ["1", "clean", "2"], "auc")[0] == pytest.approx((0.7 + 0.4) / 2)
    assert endpoint_values(curves, ["1", "clean", "2"], "2")[0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="endpoint '4' is not among"):
        endpoint_values(curves, ["1", "clean", "2"], "4")


def test_the_reference_is_read_off_the_bracketing_segment():
    front = {"a": _units(0.9, 0.3, 0.1), "b": _units(0.7, 0.5, 0.3)}
    result = compare_to_front(
        _units(0.8, 0.5, 0.2), front, name="PGD-AT", endpoint="1", aggregation="global", weights=WEIGHTS
    )
    assert result.compared and result.reference == "0.50 x a + 0.50 x b" and result.clean_gap == 0.0
    assert result.difference == pytest.approx(0.1) and result.low == pytest.approx(0.1)  # no spread: no width
    assert result.meets(0.03) and not result.meets(0.2)


def test_near_an_end_the_end_is_the_reference_and_further_out_nothing_is_compared():
    front = {"a": _units(0.9, 0.3, 0.1), "b": _units(0.7, 0.5, 0.3)}
    near = compare_to_front(
        _units(0.905, 0.35, 0.1), front, name="f", endpoint="1", aggregation="case", weights=WEIGHTS
    )
    assert near.reference == "a" and near.clean_gap == pytest.approx(0.005) and near.difference == pytest.approx(0.05)
    far = compare_to_front(
        _units(0.95, 0.9, 0.9), front, name="f", endpoint="auc", aggregation="global", weights=WEIGHTS
    )
    assert not far.compared and not far.meets(0.0) and "outside the front's clean range 0.700..0.900" in far.reference
    single = compare_to_front(_units(0.695, 0.6, 0.3), {"ramp": _units(0.7, 0.5, 0.3)}, name="r", endpoint="1",
                              aggregation="global", weights=WEIGHTS)  # fmt: skip
    assert single.reference == "ramp" and single.difference == pytest.approx(0.1)


def test_the_interval_holds_the_spread_over_patients():
    front = {"a": _units(0.9, 0.3, 0.1), "b": _units(0.7, 0.5, 0.3)}
    result = compare_to_front(
        _units(0.8, 0.45, 0.2, spread=0.1), front, name="f", endpoint="1", aggregation="global", weights=WEIGHTS
    )
    assert result.low < result.difference < result.high and result.difference == pytest.approx(0.05)


def test_configurations_on_other_units_or_an_empty_front_are_refused():
    other = unit_counts(
        [{"setting": "y", "fold": 4, "seed": 0, "counts": {"clean": {"c0": _counts(0.5)}}}], {"c0": "elsewhere"}
    )
    with pytest.raises(ValueError, match="other patients, seeds or budgets than the candidate"):
        compare_to_front(_units(0.8, 0.5, 0.2), {"y": other}, name="f", endpoint="1", aggregation="global",
                         weights=WEIGHTS)  # fmt: skip
    with pytest.raises(ValueError, match="front 'f' has no configuration"):
        compare_to_front(_units(0.8, 0.5, 0.2), {}, name="f", endpoint="1", aggregation="global", weights=WEIGHTS)
