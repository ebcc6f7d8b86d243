"""What ``evaluate`` writes: results.csv rows and values, summary.json, worst case, whole-case Dice."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from eval_helpers import numpy_dice, small_config

from imaseg.cache.reader import CaseStore
from imaseg.evaluation import AGGREGATIONS, plan_cells
from imaseg.evaluation.outputs import CSV_COLUMNS

ATTACKS = ["pgd-l2", "noise-l2", "worst-l2"]
EPS = [0.0, 0.5, 1.0]
CLASSES = [1, 2, 3]


def _rows(evaluated, attack: str, eps: float | None = None) -> list[dict]:
    return [r for r in evaluated.rows if r["attack"] == attack and (eps is None or float(r["eps"]) == eps)]


def _by_case_class(rows: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["case"], int(r["class"])): r for r in rows}


def _cases(evaluated) -> list[str]:
    return evaluated.summary["cases"]


def test_csv_has_exactly_the_documented_columns(evaluated):
    header = (evaluated.out / "results.csv").read_text().splitlines()[0]
    assert header.split(",") == CSV_COLUMNS


def test_csv_has_one_row_per_case_class_attack_and_eps(evaluated):
    cases = _cases(evaluated)
    assert len(cases) == 2, "fold 0 of tiny_cache holds one test patient with two cases"
    keys = [(r["case"], int(r["class"]), r["attack"], float(r["eps"])) for r in evaluated.rows]
    assert len(keys) == len(set(keys)), "duplicate (case, class, attack, eps) rows"
    expected = {(c, k, "clean", 0.0) for c in cases for k in CLASSES}
    expected |= {(c, k, a, e) for c in cases for k in CLASSES for a in ATTACKS for e in EPS}
    assert set(keys) == expected


def test_csv_cells_follow_the_plan_in_order(evaluated):
    planned = [(c.attack, c.eps) for c in plan_cells(small_config())]
    seen = []
    for r in evaluated.rows:
        key = (r["attack"], float(r["eps"]))
        if key not in seen:
            seen.append(key)
    assert seen == planned
    assert planned[0] == ("clean", 0.0) and all(a == "worst-l2" for a, _ in planned[-3:])


@pytest.mark.parametrize("attack", ["pgd-l2", "noise-l2", "worst-l2"])
def test_eps0_rows_equal_the_clean_rows_exactly(evaluated, attack):
    clean = _by_case_class(_rows(evaluated, "clean"))
    zero = _by_case_class(_rows(evaluated, attack, 0.0))
    assert zero.keys() == clean.keys()
    for key, row in zero.items():
        assert row["dice"] == clean[key]["dice"], key
        assert float(row["realised_norm"]) == 0.0


def test_csv_metadata_columns(evaluated):
    for r in evaluated.rows:
        assert r["norm"] == ("none" if r["attack"] == "clean" else "l2")
        assert int(r["seed"]) == 0 and int(r["restarts"]) == 1
        assert int(r["steps"]) == (2 if r["attack"] in ("pgd-l2", "worst-l2") else 0), r
        assert r["hd95"] == "", "HD95 is off: its cells stay empty (NaN)"
        assert r["class_name"] == {1: "right ventricle", 2: "myocardium", 3: "left ventricle"}[int(r["class"])]


@pytest.mark.parametrize("eps", [0.5, 1.0])
def test_eps_columns_are_rms_per_voxel_and_source_units(evaluated, eps):
    voxels = 32 * 32  # the L2 budget is over one 32 x 32 slice
    for r in _rows(evaluated, "pgd-l2", eps) + _rows(evaluated, "noise-l2", eps):
        assert float(r["eps_rms"]) == pytest.approx(eps / math.sqrt(voxels), rel=1e-5)
        assert float(r["eps_source"]) == pytest.approx(eps, rel=1e-6), "intensity 'none' keeps the source scale"
        # the clip range [0, 1] spans 1: PSNR = 20 log10(1 / rms)
        assert float(r["psnr_db"]) == pytest.approx(20 * math.log10(math.sqrt(voxels) / eps), rel=1e-5)
        # realised_norm: mean over slices of the perturbation's L2 norm, at most the budget
        assert 0.5 * eps < float(r["realised_norm"]) <= eps * (1 + 1e-4)


def test_psnr_is_empty_without_a_budget(evaluated):
    assert {r["psnr_db"] for r in _rows(evaluated, "clean") + _rows(evaluated, "pgd-l2", 0.0)} == {""}


def test_pgd_lowers_dice_and_noise_barely_moves_it(evaluated):
    mean = {(k, e): np.mean([float(r["dice"]) for r in _rows(evaluated, k, e)]) for k in ATTACKS for e in EPS}
    clean = np.mean([float(r["dice"]) for r in _rows(evaluated, "clean")])
    assert mean[("pgd-l2", 1.0)] < mean[("pgd-l2", 0.5)] < clean
    assert mean[("noise-l2", 1.0)] > mean[("pgd-l2", 1.0)]


def test_summary_structure(evaluated):
    s = evaluated.summary
    assert s["classes"] == {"1": "right ventricle", "2": "myocardium", "3": "left ventricle"}
    assert set(s["aggregations"]) == set(AGGREGATIONS)
    assert set(s["attacks"]) == set(ATTACKS)
    for name, entry in s["attacks"].items():
        assert entry["eps"] == EPS and entry["norm"] == "l2" and len(entry["cells"]) == 3
        for cell in entry["cells"]:
            for agg in AGGREGATIONS:
                assert len(cell["dice"][agg]) == 3, (name, agg)
            assert len(cell["dice"]["case_std"]) == 3 and all(v >= 0 for v in cell["dice"]["case_std"])
        assert set(s["robust_dice"][name]) == {"0", "0.5", "1"}
        assert 0.0 <= entry["auc"] <= 1.0
    for agg in AGGREGATIONS:
        assert len(s["clean"]["dice"][agg]) == 3
    assert s["headline"][0].startswith("clean Dice")
    assert any(line.startswith("pgd-l2 (steps 2, restarts 1, seed 0)") for line in s["headline"])
    saved = (evaluated.out / "summary.json").read_text()
    assert '"robust_dice"' in saved and '"headline"' in saved


def test_summary_robust_dice_and_auc_follow_the_cells(evaluated):
    s = evaluated.summary
    for name, entry in s["attacks"].items():
        curve = [c["mean_dice"]["global"] for c in entry["cells"]]
        assert list(s["robust_dice"][name].values()) == curve
        # trapezoid over eps 0, 0.5, 1 divided by the range 1
        assert entry["auc"] == pytest.approx(0.25 * curve[0] + 0.5 * curve[1] + 0.25 * curve[2])
        assert curve[0] == s["clean"]["mean_dice"]["global"], "eps 0 equals clean"


def test_summary_global_dice_equals_pooled_counts_of_the_csv_cases(evaluated):
    """The 'global' aggregation of the clean cell pools tp / fp / fn of both cases."""
    records = evaluated.record("clean")["cases"]
    tp = np.sum([c["tp"] for c in records.values()], 0)
    fp = np.sum([c["fp"] for c in records.values()], 0)
    fn = np.sum([c["fn"] for c in records.values()], 0)
    expected = 2 * tp / (2 * tp + fp + fn)
    np.testing.assert_allclose(evaluated.summary["clean"]["dice"]["global"], expected, rtol=1e-12)
    per_case = _by_case_class(_rows(evaluated, "clean"))
    for k, cls in enumerate(CLASSES):
        values = [float(per_case[(c, cls)]["dice"]) for c in _cases(evaluated)]
        assert evaluated.summary["clean"]["dice"]["case"][k] == pytest.approx(np.mean(values), abs=1e-6)
        assert evaluated.summary["clean"]["dice"]["case_std"][k] == pytest.approx(np.std(values), abs=1e-6)


def test_summary_checks(evaluated):
    checks = evaluated.summary["checks"]
    assert checks["forward_deterministic"] == {"max_abs_diff": 0.0, "ok": True}
    noise = checks["noise_weaker_than_attack"]
    assert [(n["eps"], n["noise"], n["attack"]) for n in noise] == [
        (0.5, "noise-l2", "pgd-l2"),
        (1.0, "noise-l2", "pgd-l2"),
    ]
    assert all(n["ok"] == (n["noise_dice"] >= n["attack_dice"] - 1e-3) for n in noise)
    steps = checks["steps_2x"]
    assert steps["attack"] == "pgd-l2" and steps["eps"] == 1.0 and steps["cases"] == _cases(evaluated)
    assert steps["dice_steps"] == pytest.approx(
        evaluated.summary["attacks"]["pgd-l2"]["cells"][2]["mean_dice"]["global"]
    )
    assert steps["ok"] == (steps["dice_steps"] - 0.02 <= steps["dice_2x_steps"] <= steps["dice_steps"] + 0.01)
    assert steps["step_size"] == pytest.approx(2.5 * 1.0 / evaluated.summary["settings"]["steps"])
    falls = checks["dice_falls_with_eps"]
    assert {f["attack"] for f in falls} == {"pgd-l2", "noise-l2", "worst-l2"}
    assert all(f["ok"] == (f["rise"] <= 0.005) for f in falls)


def test_steps_check_is_absent_when_disabled(copy_run):
    from imaseg.evaluation import evaluate

    summary = evaluate(copy_run(), small_config(attacks=["pgd-l2"], eps=[0.0, 0.5], overlays=0), progress=False)
    assert "steps_2x" not in summary["checks"]
    assert summary["checks"]["noise_weaker_than_attack"] == [], "no noise attack, nothing to compare"


@pytest.mark.parametrize("eps", [0.0, 0.5, 1.0])
def test_worst_case_takes_each_slice_from_a_member_and_is_never_above_one(evaluated, eps):
    attacks = ("pgd-l2", "noise-l2")
    members = [evaluated.cell(f"{a}__eps{eps:g}") for a in attacks]
    worst = evaluated.cell(f"worst-l2__eps{eps:g}")
    record = evaluated.summary["attacks"]
    for case in _cases(evaluated):
        dice = np.stack([m[f"dice__{case}"] for m in members])  # (attacks, slices)
        assert dice.shape == (2, 4)
        chosen = json.loads((evaluated.out / "cells" / f"worst-l2__eps{eps:g}.json").read_text())["cases"][case][
            "members"
        ]
        assert len(chosen) == 4 and set(chosen) <= set(attacks)
        for s, name in enumerate(chosen):
            a = attacks.index(name)
            np.testing.assert_array_equal(worst[f"pred__{case}"][..., s], members[a][f"pred__{case}"][..., s])
            assert worst[f"dice__{case}"][s] == dice[a, s]
    k = record["worst-l2"]["eps"].index(eps)
    won = record["worst-l2"]["cells"][k]["members_won"]
    assert sum(won.values()) == 4 * len(_cases(evaluated)) and set(won) <= set(attacks)
    headline = record["worst-l2"]["cells"][k]["mean_dice"]["global"]
    for a in attacks:
        assert headline <= record[a]["cells"][k]["mean_dice"]["global"] + 1e-9


def _case_stub(slice_axis):
    from imaseg.cache.case_meta import CaseMeta
    from imaseg.cache.reader import CachedCase

    return CachedCase(
        "c",
        np.zeros((1, 2, 2, 4), np.float32),
        np.zeros((2, 2, 4), np.uint8),
        np.eye(4),
        np.eye(4),
        CaseMeta("c", slice_axis=slice_axis),
    )


@pytest.mark.parametrize("slice_axis", [2, 0], ids=["slices-along-last-axis", "slices-along-first-axis"])
def test_worst_of_takes_each_slice_from_the_chosen_output(slice_axis):
    from imaseg.evaluation.cells import CaseOutput, worst_of

    shape = [2, 2, 2]
    shape[slice_axis] = 4
    dice = [[0.9, 0.2, 0.5, 0.3], [0.8, 0.6, 0.1, 0.3], [0.1, 0.7, 0.4, 0.9]]  # per output, per slice
    outputs = [CaseOutput(np.full(shape, k + 1, np.uint8), None, [10.0 * (k + 1)] * 4, d) for k, d in enumerate(dice)]
    worst = worst_of(outputs, _case_stub(slice_axis), np.array([2, 0, 1, 0]))
    picked = np.moveaxis(worst.prediction, slice_axis, 0).reshape(4, -1)
    assert (picked == np.array([3, 1, 2, 1])[:, None]).all()
    assert worst.sample_dice == pytest.approx([0.1, 0.2, 0.1, 0.3])
    assert worst.norms == [30.0, 10.0, 20.0, 10.0]
    assert worst.prediction.shape == tuple(shape)


def test_worst_of_a_whole_volume_keeps_the_chosen_output_whole():
    from imaseg.evaluation.cells import CaseOutput, worst_of

    outputs = [
        CaseOutput(np.full((2, 2, 4), k, np.uint8), np.full((1, 2, 2, 4), k, np.float32), [float(k)], [d])
        for k, d in enumerate([0.7, 0.2, 0.5])
    ]
    worst = worst_of(outputs, _case_stub(None), np.array([1]))
    assert (worst.prediction == 1).all() and (worst.perturbation == 1).all()
    assert worst.sample_dice == [0.2] and worst.norms == [1.0]


def test_the_worst_case_is_never_above_a_member_in_global_dice():
    """A two-slice case where taking each slice's lowest slice Dice lands above a member's global Dice."""
    from imaseg.metrics.worst import choose_worst, mean_global_dice

    # one class; per member and slice [tp, fp, fn]
    a = np.array([[[2, 8, 14]], [[12, 12, 0]]], dtype=float)  # slice Dice 0.154, 0.667; global 0.452
    b = np.array([[[0, 3, 0]], [[20, 15, 19]]], dtype=float)  # slice Dice 0.000, 0.541; global 0.519
    counts = np.stack([a, b])
    per_slice_rule = counts[[1, 1], [0, 1]].sum(0)  # b wins both slices by slice Dice
    assert float(mean_global_dice(per_slice_rule)) == pytest.approx(0.5195, abs=1e-4), "above member a's 0.452"
    choice = choose_worst(counts)
    total = float(mean_global_dice(counts[choice, np.arange(2)].sum(0)))
    assert choice.tolist() == [0, 1] and total == pytest.approx(0.44)
    assert total <= min(float(mean_global_dice(m.sum(0))) for m in counts)


@pytest.mark.parametrize(
    "key", ["clean", "pgd-l2__eps1", "worst-l2__eps0.5"], ids=["clean", "pgd-eps1", "worst-eps0.5"]
)
def test_whole_case_dice_equals_dice_of_the_stacked_volume(evaluated, tiny_cache, key):
    store = CaseStore(tiny_cache)
    cell = evaluated.cell(key)
    attack, eps = ("clean", 0.0) if key == "clean" else (key.split("__eps")[0], float(key.split("__eps")[1]))
    rows = _by_case_class(_rows(evaluated, attack, eps))
    for case in _cases(evaluated):
        pred, label = cell[f"pred__{case}"], store.load_case(case).label
        assert pred.shape == label.shape == (32, 32, 4)
        expected = numpy_dice(pred, label, 4)
        for cls, value in zip(CLASSES, expected):
            got = rows[(case, cls)]["dice"]
            if math.isnan(value):
                assert got == ""
            else:
                assert float(got) == pytest.approx(value, rel=1e-5, abs=1e-7), (case, cls)


def test_whole_case_dice_equals_monai_dice_metric(evaluated, tiny_cache):
    import torch
    import torch.nn.functional as F
    from monai.metrics import DiceMetric

    store = CaseStore(tiny_cache)
    cell = evaluated.cell("pgd-l2__eps0.5")
    rows = _by_case_class(_rows(evaluated, "pgd-l2", 0.5))
    for case in _cases(evaluated):
        pred = F.one_hot(torch.from_numpy(cell[f"pred__{case}"]).long(), 4).movedim(-1, 0)[None]
        label = F.one_hot(torch.from_numpy(store.load_case(case).label).long(), 4).movedim(-1, 0)[None]
        dice = DiceMetric(include_background=False, reduction="none")(pred, label)[0]
        for cls, value in zip(CLASSES, dice.tolist()):
            assert float(rows[(case, cls)]["dice"]) == pytest.approx(value, rel=1e-5)


def test_slice_counts_add_up_to_the_case_counts(evaluated):
    for key in ("clean", "pgd-l2__eps1"):
        for record in evaluated.record(key)["cases"].values():
            slices = np.array(record["slices"])  # (S, C-1, 3)
            assert slices.shape == (4, 3, 3)
            np.testing.assert_array_equal(slices.sum(0), np.stack([record["tp"], record["fp"], record["fn"]], -1))
