"""Per-case metrics and the three Dice aggregations, on hand-made label maps and counts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from imaseg.evaluation import AGGREGATIONS, aggregate_dice, case_metrics
from imaseg.evaluation.metrics import slice_counts


def _label() -> torch.Tensor:
    label = torch.zeros(12, 12, dtype=torch.long)
    label[3:8, 3:8] = 1  # 25 voxels
    label[0:2, 0:2] = 2  # 4 voxels
    return label


def _shifted() -> torch.Tensor:
    return torch.roll(_label(), 1, 0)


def _partial() -> torch.Tensor:
    pred = _label().clone()
    pred[3:5, 3:8] = 0  # 10 voxels of class 1 missed
    pred[10:12, 10:12] = 1  # 4 voxels of class 1 where there is none
    pred[0:2, 0:2] = 3  # class 2 predicted as class 3 (absent from the truth)
    return pred


PRED_CASES = [
    pytest.param(_label, id="perfect"),
    pytest.param(_shifted, id="shifted-by-one"),
    pytest.param(_partial, id="partial-with-absent-class"),
    pytest.param(lambda: torch.zeros(12, 12, dtype=torch.long), id="empty-prediction"),
]


@pytest.mark.parametrize("make_pred", PRED_CASES)
def test_case_dice_is_2tp_over_2tp_fp_fn_per_class(make_pred):
    pred, label = make_pred(), _label()
    out = case_metrics(pred, label, 4, hd95=False)
    p, t = pred.numpy(), label.numpy()
    for k, c in enumerate(range(1, 4)):
        tp, fp, fn = (
            int(((p == c) & (t == c)).sum()),
            int(((p == c) & (t != c)).sum()),
            int(((p != c) & (t == c)).sum()),
        )
        assert (out["tp"][k], out["fp"][k], out["fn"][k]) == (tp, fp, fn), c
        if (t == c).any():
            assert out["dice"][k] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-6), c
        else:
            assert math.isnan(out["dice"][k]), "a class absent from the ground truth has no case Dice"
    assert len(out["hd95"]) == 3 and all(math.isnan(v) for v in out["hd95"]), "hd95=False gives NaN"


def test_partial_case_by_hand():
    out = case_metrics(_partial(), _label(), 4, hd95=False)
    assert out["tp"] == [15, 0, 0] and out["fp"] == [4, 0, 4] and out["fn"] == [10, 4, 0]
    assert out["dice"][0] == pytest.approx(30 / 44)
    assert out["dice"][1] == 0.0 and math.isnan(out["dice"][2])


def test_an_erased_structure_scores_the_image_diagonal_not_nan():
    out = case_metrics(torch.zeros(12, 12, dtype=torch.long), _label(), 4, spacing=[1.0, 2.0])
    diagonal = math.hypot(12 * 1.0, 12 * 2.0)
    assert out["hd95"][:2] == pytest.approx([diagonal, diagonal]), "erased RV and MYO: the largest distance"
    assert math.isnan(out["hd95"][2]), "absent from truth and prediction: undefined"
    assert out["dice"][:2] == [0.0, 0.0]


def test_a_made_up_structure_scores_the_image_diagonal():
    out = case_metrics(_partial(), _label(), 4, spacing=[1.0, 1.0])
    assert out["hd95"][2] == pytest.approx(math.hypot(12, 12)) and math.isfinite(out["hd95"][0])


def test_a_stronger_attack_never_looks_better_in_hd95():
    """The issue's trap: with NaN for erased classes a nanmean over cases improved as attacks got stronger."""
    label = _label()
    partial = case_metrics(_partial(), label, 4, spacing=[1.0, 1.0])["hd95"]
    erased = case_metrics(torch.zeros_like(label), label, 4, spacing=[1.0, 1.0])["hd95"]
    assert erased[0] >= partial[0] and erased[1] >= partial[1]


@pytest.mark.parametrize(
    "axis,spacing,expected",
    [
        pytest.param(0, [2.0, 1.0], 2.0, id="shift-along-2mm-axis"),
        pytest.param(1, [2.0, 1.0], 1.0, id="shift-along-1mm-axis"),
        pytest.param(0, [1.0, 1.0], 1.0, id="isotropic"),
    ],
)
def test_hd95_is_in_mm_of_the_spacing(axis, spacing, expected):
    pred = torch.roll(_label(), 1, axis)
    out = case_metrics(pred, _label(), 4, spacing=spacing)
    assert out["hd95"][:2] == pytest.approx([expected, expected])
    assert out["hd95"][0] == out["hd95"][0] and out["hd95"][0] != math.inf


def test_case_metrics_3d_matches_the_sum_of_its_slices():
    rng = np.random.default_rng(0)
    label = torch.from_numpy(rng.integers(0, 3, (6, 5, 4)))
    pred = torch.from_numpy(rng.integers(0, 3, (6, 5, 4)))
    out = case_metrics(pred, label, 3, hd95=False)
    slices = np.array(slice_counts(pred.movedim(2, 0), label.movedim(2, 0), 3))  # (S, C-1, 3)
    assert slices.shape == (4, 2, 3)
    np.testing.assert_array_equal(slices.sum(0), np.stack([out["tp"], out["fp"], out["fn"]], -1))


def _record(dice, slices):
    """A case record as evaluate stores it: case Dice, summed counts, per-slice [tp, fp, fn]."""
    counts = np.array(slices).sum(0)
    return {
        "dice": dice,
        "tp": counts[:, 0].tolist(),
        "fp": counts[:, 1].tolist(),
        "fn": counts[:, 2].tolist(),
        "slices": slices,
    }


# Two cases, two classes, two slices each ([tp, fp, fn] per class):
#   case a: slice 0 class 1 perfect (8, 0, 0), class 2 perfect (4, 0, 0);
#           slice 1 class 1 false positives only (0, 2, 0), class 2 empty (0, 0, 0)
#   case b: slice 0 class 1 (1, 0, 3), class 2 empty; slice 1 class 1 empty, class 2 false positives (0, 4, 0)
HAND = {
    "a": _record([16 / 18, 1.0], [[[8, 0, 0], [4, 0, 0]], [[0, 2, 0], [0, 0, 0]]]),
    "b": _record([2 / 5, float("nan")], [[[1, 0, 3], [0, 0, 0]], [[0, 0, 0], [0, 4, 0]]]),
}
EXPECTED = {
    # pooled counts: class 1 tp 9 fp 2 fn 3; class 2 tp 4 fp 4 fn 0
    "global": [18 / 23, 8 / 12],
    # mean of the case Dice; case b lacks class 2 in its truth and is skipped for it
    "case": [(16 / 18 + 2 / 5) / 2, 1.0],
    "case_std": [abs(16 / 18 - 2 / 5) / 2, 0.0],
    # mean over slices holding the class in truth or prediction: class 1 slices 1, 0, 0.4; class 2 slices 1, 0
    "slice": [(1.0 + 0.0 + 0.4) / 3, 0.5],
}


@pytest.mark.parametrize("aggregation", [*AGGREGATIONS, "case_std"])
def test_aggregations_by_hand(aggregation):
    got = aggregate_dice(HAND)
    assert set(got) == {*AGGREGATIONS, "case_std"}
    assert got[aggregation] == pytest.approx(EXPECTED[aggregation])


def test_the_three_aggregations_differ_on_the_hand_example():
    got = aggregate_dice(HAND)
    first = [got[a][0] for a in AGGREGATIONS]
    assert len({round(v, 6) for v in first}) == 3, first
    # global pools voxels, so the large perfect slice dominates; per slice, the small bad slices count fully
    assert got["global"][0] > got["case"][0] > got["slice"][0]


def test_aggregation_of_a_class_absent_everywhere_is_nan():
    cases = {"a": _record([float("nan")], [[[0, 0, 0]]])}
    got = aggregate_dice(cases)
    assert all(math.isnan(got[a][0]) for a in AGGREGATIONS)


def test_slice_aggregation_is_nan_without_slice_records():
    cases = {k: {key: v for key, v in r.items() if key != "slices"} for k, r in HAND.items()}
    got = aggregate_dice(cases)
    assert all(math.isnan(v) for v in got["slice"])
    assert got["global"] == pytest.approx(EXPECTED["global"])
