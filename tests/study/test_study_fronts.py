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


def _units(clean: float, eps1: float, eps2: float, spread: float = 0.0, seeds: tuple = (0.0,)):
    """Every patient the same (``spread`` 0) or eps 1 Dice moving by +-``spread`` across patients; one record per
    entry of ``seeds``, its clean Dice shifted by that entry."""
    records = []
    for seed, shift in enumerate(seeds):
        cases = {f"c{i}": (clean + shift, eps1 + spread * (-1) ** i, eps2) for i in range(6)}
        counts = {
            "clean": {c: _counts(v[0]) for c, v in cases.items()},
            "1": {c: _counts(v[1]) for c, v in cases.items()},
            "2": {c: _counts(v[2]) for c, v in cases.items()},
        }
        records.append({"setting": "x", "fold": 3, "seed": seed, "counts": counts})
    return unit_counts(records, PATIENTS)


WEIGHTS = crossed_draws(6, 1, replicates=400)


def test_endpoint_values_auc_counts_clean_dice_at_eps_0():
    curves = np.array([[0.6, 0.8, 0.2]])
    assert endpoint_values(curves, ["1", "clean", "2"], "auc")[0] == pytest.approx((0.7 + 0.4) / 2)
    assert endpoint_values(curves, ["1", "clean", "2"], "2")[0] == pytest.approx(0.2)
    assert endpoint_values(curves, ["1", "clean", "2"], "auc_attacked")[0] == pytest.approx(0.4)  # over 1..2 only
    with pytest.raises(ValueError, match="endpoint '4' is not among"):
        endpoint_values(curves, ["1", "clean", "2"], "4")


def test_the_reference_is_read_off_the_bracketing_segment():
    front = {"a": _units(0.9, 0.3, 0.1), "b": _units(0.7, 0.5, 0.3)}
    result = compare_to_front(
        _units(0.85, 0.5, 0.2), front, name="PGD-AT", endpoint="1", aggregation="global", weights=WEIGHTS
    )  # a quarter of the way from a to b: 0.75 a + 0.25 b = 0.35 at eps 1
    assert result.compared and result.reference == "0.75 x a + 0.25 x b" and result.clean_gap == 0.0
    assert result.difference == pytest.approx(0.15) and result.low == pytest.approx(0.15)  # no spread: no width
    assert result.meets(0.03) and not result.meets(0.2) and result.clipped == 0.0


def test_the_ends_and_what_is_not_compared():
    front = {"a": _units(0.9, 0.3, 0.1), "b": _units(0.7, 0.5, 0.3)}
    cleaner = compare_to_front(
        _units(0.95, 0.35, 0.1), front, name="f", endpoint="1", aggregation="case", weights=WEIGHTS
    )
    assert (
        cleaner.reference == "a"
        and cleaner.clean_gap == pytest.approx(0.05)
        and cleaner.difference == pytest.approx(0.05)
    )
    near = compare_to_front(
        _units(0.695, 0.6, 0.3), front, name="f", endpoint="1", aggregation="global", weights=WEIGHTS
    )
    assert near.reference == "b" and near.clean_gap == pytest.approx(-0.005) and near.difference == pytest.approx(0.1)
    below = compare_to_front(
        _units(0.65, 0.9, 0.9), front, name="f", endpoint="auc", aggregation="global", weights=WEIGHTS
    )
    assert not below.compared and not below.meets(0.0)
    assert "not comparable: clean Dice below the front's range 0.700..0.900 by more than 0.01" in below.reference
    single = compare_to_front(_units(0.695, 0.6, 0.3), {"ramp": _units(0.7, 0.5, 0.3)}, name="r", endpoint="1",
                              aggregation="global", weights=WEIGHTS)  # fmt: skip
    assert single.reference == "ramp" and single.difference == pytest.approx(0.1)


def test_replicates_never_extrapolate_the_segment():
    # two seeds: the candidate's clean Dice moves between replicates, past the close front points' ends
    front = {"a": _units(0.81, 0.3, 0.1, seeds=(0.0, 0.0)), "b": _units(0.79, 0.5, 0.3, seeds=(0.0, 0.0))}
    weights = crossed_draws(6, 2, replicates=400)
    result = compare_to_front(
        _units(0.8, 0.6, 0.2, seeds=(-0.1, 0.1)), front, name="f", endpoint="1", aggregation="global", weights=weights
    )
    assert 0 < result.clipped < 1  # replicates drawing one seed only fall outside 0.79..0.81
    assert 0.1 - 1e-9 <= result.low <= result.high <= 0.3 + 1e-9  # the reference stays between a's 0.3 and b's 0.5


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
    with pytest.raises(ValueError, match="other patients, seeds, units or budgets than the candidate"):
        compare_to_front(_units(0.8, 0.5, 0.2), {"y": other}, name="f", endpoint="1", aggregation="global",
                         weights=WEIGHTS)  # fmt: skip
    one_seed_missing = _units(0.8, 0.5, 0.2, seeds=(0.0, 0.0))
    shorter = unit_counts(
        [{"setting": "z", "fold": 3, "seed": seed, "counts": {k: {c: _counts(0.5) for c in PATIENTS if c != "c0" or seed == 0}
          for k in ("clean", "1", "2")}} for seed in (0, 1)], PATIENTS
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"are cells missing\?"):
        compare_to_front(one_seed_missing, {"z": shorter}, name="f", endpoint="1", aggregation="global",
                         weights=crossed_draws(6, 2, replicates=10))  # fmt: skip
    with pytest.raises(ValueError, match="front 'f' has no configuration"):
        compare_to_front(_units(0.8, 0.5, 0.2), {}, name="f", endpoint="1", aggregation="global", weights=WEIGHTS)
