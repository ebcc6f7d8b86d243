"""Bootstrap intervals over patients: the area under Dice-vs-eps and its interval, and what they refuse."""

import numpy as np
import pytest

from imaseg.metrics.bootstrap import bootstrap_auc, bootstrap_dice, paired_bootstrap_difference
from imaseg.metrics.worst import mean_global_dice

PATIENTS = {f"p{i}{phase}": f"p{i}" for i in range(6) for phase in "ab"}


def _counts(tp: int, spread: int) -> dict[str, np.ndarray]:
    """Per case ``(1, 3)`` counts that differ between patients, so the interval has width."""
    return {case: np.array([[tp + i * spread, 2 + i, 3]]) for i, case in enumerate(sorted(PATIENTS))}


def test_auc_is_the_mean_dice_over_the_budget_range():
    counts = {0.0: _counts(40, 2), 1.0: _counts(20, 1), 2.0: _counts(4, 1)}
    dice = [float(mean_global_dice(np.sum(list(counts[e].values()), axis=0))) for e in (0.0, 1.0, 2.0)]
    auc, low, high = bootstrap_auc(counts, PATIENTS, replicates=300)
    assert auc == pytest.approx((dice[0] / 2 + dice[1] + dice[2] / 2) / 2)
    assert low < auc < high


def test_auc_interval_matches_the_single_budget_interval_when_the_curve_is_flat():
    same = _counts(20, 3)
    auc, low, high = bootstrap_auc({0.5: same, 1.0: same}, PATIENTS, replicates=400, seed=3)
    assert (low, high) == pytest.approx(bootstrap_dice(same, PATIENTS, replicates=400, seed=3))


@pytest.mark.parametrize(
    ("counts", "match"),
    [
        pytest.param({1.0: _counts(20, 1)}, "at least two budgets, got 1", id="one-budget"),
        pytest.param(
            {0.5: _counts(20, 1), 1.0: {"p0a": np.array([[1, 1, 1]])}},
            "budget 1 holds other cases than budget 0.5",
            id="different-cases",
        ),
    ],
)
def test_auc_refuses_what_it_cannot_integrate(counts, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_auc(counts, PATIENTS)


def test_paired_difference_per_case_differs_from_global_and_refuses_other_aggregations():
    first = {"a": [[9, 0, 1]], "b": [[1, 0, 1]]}  # a large structure found, a small one half found
    second = {"a": [[5, 0, 5]], "b": [[2, 0, 0]]}
    patients = {"a": "p1", "b": "p2"}
    pooled = paired_bootstrap_difference(first, second, patients)["difference"]
    per_case = paired_bootstrap_difference(first, second, patients, aggregation="case")["difference"]
    assert pooled == pytest.approx(20 / 22 - 14 / 19)  # global Dice: pooled tp, fp, fn
    assert per_case == pytest.approx((18 / 19 + 2 / 3) / 2 - (10 / 15 + 1) / 2)  # mean of the cases' Dice
    with pytest.raises(ValueError, match=r"`aggregation` must be one of \('global', 'case'\), got 'slice'"):
        paired_bootstrap_difference(first, second, patients, aggregation="slice")
