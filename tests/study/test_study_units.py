"""Counts by (patient, seed), the two aggregations of Dice, and the crossed bootstrap's draws."""

from __future__ import annotations

import numpy as np
import pytest

from imaseg.metrics.worst import mean_global_dice
from imaseg.study.units import crossed_draws, unit_counts


def _record(seed: int, counts: dict, fold: int = 3) -> dict:
    return {"setting": "x", "fold": fold, "seed": seed, "counts": counts}


PATIENTS = {"p1_a": "p1", "p1_b": "p1", "p2_a": "p2"}


def test_units_sum_their_cases_and_the_point_estimates_match_the_pooled_figures():
    seed0 = {"clean": {"p1_a": [[8, 1, 1], [0, 0, 0]], "p1_b": [[4, 2, 2], [3, 1, 0]], "p2_a": [[2, 0, 2], [1, 1, 1]]}}
    seed1 = {"clean": {"p1_a": [[6, 2, 2], [1, 0, 1]], "p1_b": [[5, 0, 1], [0, 4, 0]], "p2_a": [[1, 1, 1], [2, 0, 0]]}}
    units = unit_counts([_record(0, seed0), _record(1, seed1)], PATIENTS)
    assert units.patients == ("p1", "p2") and units.seeds == (0, 1) and units.keys == ("clean",)
    np.testing.assert_array_equal(units.totals[0, 0, 0], [[12, 3, 3], [3, 1, 0]])  # p1, seed 0: both frames
    every = np.array([v for counts in (seed0, seed1) for v in counts["clean"].values()], dtype=float)
    point = crossed_draws(2, 2, replicates=3)[:1]
    assert units.curves(point, "global")[0, 0] == pytest.approx(float(mean_global_dice(every.sum(0))))
    # per case: class 1 over all 6 cases; class 2 over the 4 cases whose label has it (MONAI's ignore_empty: the
    # case predicting 4 voxels of a class its label lacks is left out, not counted as Dice 0)
    dice = 2 * every[..., 0] / np.maximum(2 * every[..., 0] + every[..., 1] + every[..., 2], 1)
    in_label = every[..., 0] + every[..., 2] > 0
    assert in_label[:, 1].sum() == 4
    expected = np.mean([dice[:, 0].mean(), dice[in_label[:, 1], 1].mean()])
    assert units.curves(point, "case")[0, 0] == pytest.approx(expected)
    assert units.present.all()


def test_a_replicate_counts_each_unit_as_often_as_it_was_drawn():
    counts = {"clean": {"p1_a": [[9, 1, 0]], "p2_a": [[1, 0, 9]]}}
    units = unit_counts([_record(0, counts)], PATIENTS)
    only_p1 = np.array([[[2.0], [0.0]]])  # p1 drawn twice, p2 never
    assert units.curves(only_p1, "global")[0, 0] == pytest.approx(18 / 19)
    with pytest.raises(ValueError, match="`aggregation` must be one of"):
        units.curves(only_p1, "slice")


def test_crossed_draws_resample_patients_and_seeds_independently():
    weights = crossed_draws(5, 3, replicates=500, seed=1)
    assert weights.shape == (501, 5, 3)
    assert (weights[1:].sum((1, 2)) == 15).all()  # 5 patients x 3 seeds drawn in every replicate
    seed_weight = weights[1:].sum(1) / 5  # each replicate's seed multiplicities
    assert (seed_weight.sum(1) == 3).all() and (seed_weight != 1).any()
    assert (crossed_draws(4, 1, replicates=10)[:, :, 0].sum(1) == 4).all()  # one seed: patients only


def test_unit_counts_refuses_mixed_budgets_and_unknown_patients():
    a = _record(0, {"clean": {"p1_a": [[1, 0, 0]]}, "1": {"p1_a": [[1, 0, 0]]}})
    b = _record(1, {"clean": {"p1_a": [[1, 0, 0]]}})
    with pytest.raises(ValueError, match="every cell needs the same evaluation"):
        unit_counts([a, b], PATIENTS)
    with pytest.raises(ValueError, match=r"cases \['zz'\] \(of 1\) have no patient"):
        unit_counts([_record(0, {"clean": {"zz": [[1, 0, 0]]}})], PATIENTS)
    with pytest.raises(ValueError, match="no records"):
        unit_counts([], PATIENTS)


def test_a_missing_cell_leaves_its_units_absent():
    fold3 = _record(0, {"clean": {"p1_a": [[1, 0, 0]]}}, fold=3)
    fold4 = _record(1, {"clean": {"p2_a": [[1, 0, 0]]}}, fold=4)
    units = unit_counts([fold3, fold4], PATIENTS)  # p1 has no seed-1 record, p2 no seed-0 record
    assert units.present.tolist() == [[True, False], [False, True]]
