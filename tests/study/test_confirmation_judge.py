"""``benchmarks/ima_confirmation.py``'s ``judge`` on synthetic records of the real X-ray and ACDC declarations: the
verdicts follow the counts, and a partial confirmation yields no figure. No real result is read: records and margins
live in ``tmp_path``."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from pathlib import Path

import pytest

from imaseg.study.cells import cell_fingerprints, expand_cells, slug
from imaseg.study.declaration import load_study
from imaseg.study.records import StudyRecords

REPO = Path(__file__).resolve().parents[2]


def _import_script():
    """``benchmarks/ima_confirmation.py`` (not a package; it imports its sibling ``ima_choice``), with
    ``benchmarks/`` on ``sys.path`` only while importing."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module("ima_confirmation")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


confirmation = _import_script()

PATIENTS = {f"CASE_{i:03d}": f"CASE_{i:03d}" for i in range(12)}


def _study(tmp_path: Path, name: str = "ima_confirm_cxr"):
    study = load_study(REPO / "benchmarks" / "studies" / f"{name}.yaml")
    return dataclasses.replace(study, results=tmp_path)


def _budgets(study) -> tuple[str, ...]:
    return tuple(f"{eps:g}" for eps in study.evaluate["eps"])


def _counts(budgets: tuple[str, ...], clean: float, slope: float, seed: int) -> dict:
    """Per case one class of 1000 label voxels; Dice ``clean`` at eps 0, falling by ``slope`` per eps unit,
    jittered a little per case and seed so the bootstrap has spread."""
    out = {}
    for key in ("clean", *budgets):
        eps = 0.0 if key == "clean" else float(key)
        per_case = {}
        for i, case in enumerate(PATIENTS):
            dice = min(max(clean - slope * eps + 0.004 * ((i + seed) % 3 - 1), 0.0), 1.0)
            tp = round(1000 * dice)  # fp = fn = 1000 - tp gives Dice = tp / 1000
            per_case[case] = [[tp, 1000 - tp, 1000 - tp]]
        out[key] = per_case
    return out


def _records(study, curves: dict[str, tuple[float, float]], skip: str | None = None) -> StudyRecords:
    records, budgets = StudyRecords(), _budgets(study)
    cells = expand_cells(study)
    fingerprints = cell_fingerprints(study, cells)
    for cell in cells:
        if cell.key == skip:
            continue
        clean, slope = curves.get(cell.name, (0.95, 0.1))
        record = {"setting": cell.name, "method": "x", "fold": cell.fold, "seed": cell.seed}
        records.add(
            cell.key, {**record, "counts": _counts(budgets, clean, slope, cell.seed)}, fingerprints[cell.key], PATIENTS
        )
    return records


def _margins(study, moved: float, changed: float, skip: str | None = None, delta: float = 1.0) -> None:
    """Margins of every IMA cell, which start at ``delta``: median ``delta`` for six epochs, then
    ``(1 + moved) * delta`` for three."""
    study.margins_dir.mkdir(parents=True)
    for cell in expand_cells(study):
        if cell.name == confirmation.PROTOCOL[study.name]["ima"] and cell.key != skip:
            epochs = [{"margin_median": delta, "margin_changed": 0.5}] * 6 + [
                {"margin_median": (1.0 + moved) * delta, "margin_changed": changed}
            ] * 3
            data = {"delta": delta, "eps_min": 0.0, "epochs": epochs}
            (study.margins_dir / f"{slug(cell.key)}.json").write_text(json.dumps(data))


FRONTS = {  # front members' clean Dice 0.925-0.935, every slope 0.08; STD clean and fragile
    "std": (0.95, 0.11),
    "pgd-at eps 3": (0.935, 0.08),
    "pgd-at eps 4": (0.93, 0.08),
    "pgd-at eps 6": (0.925, 0.08),
    "pgd-at eps 4 voxel-weighted": (0.935, 0.08),
    "pgd-at eps 6 voxel-weighted": (0.925, 0.08),
    "ramp 1 to eps 8 voxel-weighted": (0.93, 0.08),
}


def test_ima_clearly_above_every_front_meets_the_auc_target(tmp_path):
    study = _study(tmp_path)
    _margins(study, moved=3.0, changed=0.4)
    result = confirmation.judge(study, _records(study, {**FRONTS, "ima voxel eps_max 8": (0.93, 0.06)}))
    assert result["missing"] == [] and result["cells"] == 48
    assert result["units"] == {"patients": 12, "seeds": [0, 1, 2]}
    primary = [r for r in result["fronts"] if r["endpoint"] == "auc"]
    assert len(primary) == 6 and all(r["compared"] for r in primary)  # 3 fronts x 2 aggregations
    # AUC = mean Dice over eps 0..8 (trapezoid rule): a slope 0.02 flatter gains 0.02 x mean eps 4 = 0.08
    assert all(r["difference"] == pytest.approx(0.08, abs=0.005) and r["low"] > 0 for r in primary)
    assert result["target_auc"] == "met"
    assert result["mechanism"]["verdict"] == "met" and len(result["mechanism"]["cells"]) == 6
    assert "**AUC target**" in confirmation.markdown(result)


def test_ima_equal_to_a_front_does_not_meet_it_nor_a_stalled_margin_the_mechanism(tmp_path):
    study = _study(tmp_path)
    _margins(study, moved=1.0, changed=0.4)
    result = confirmation.judge(study, _records(study, {**FRONTS, "ima voxel eps_max 8": (0.93, 0.08)}))
    primary = [r for r in result["fronts"] if r["endpoint"] == "auc"]
    assert all(abs(r["difference"]) < 0.01 for r in primary)
    assert result["target_auc"] == "not met"
    assert result["mechanism"]["verdict"] == "not met"  # median moved 1 delta of the 2 required


def test_a_missing_cell_yields_only_the_list_of_missing_cells(tmp_path):
    study = _study(tmp_path)
    result = confirmation.judge(study, _records(study, FRONTS, skip="pgd-at eps 6 fold4 seed2"))
    assert result["missing"] == ["pgd-at eps 6 fold4 seed2"] and result["target_auc"] == "incomplete"
    assert "table" not in result and "fronts" not in result
    text = confirmation.markdown(result)
    assert "Incomplete: 1 cell(s)" in text and "pgd-at eps 6 fold4 seed2" in text


def test_a_gain_below_the_threshold_does_not_meet_it_though_its_interval_is_above_0(tmp_path):
    study = _study(tmp_path)
    _margins(study, moved=3.0, changed=0.4)
    result = confirmation.judge(study, _records(study, {**FRONTS, "ima voxel eps_max 8": (0.93, 0.0775)}))
    primary = [r for r in result["fronts"] if r["endpoint"] == "auc"]
    assert all(r["difference"] == pytest.approx(0.01, abs=0.003) and r["low"] > 0 for r in primary)
    assert result["target_auc"] == "not met"


def test_one_front_level_with_ima_fails_the_target_however_far_ima_leads_the_others(tmp_path):
    study = _study(tmp_path)
    _margins(study, moved=3.0, changed=0.4)
    curves = {**FRONTS, "ramp 1 to eps 8 voxel-weighted": (0.93, 0.06), "ima voxel eps_max 8": (0.93, 0.06)}
    result = confirmation.judge(study, _records(study, curves))
    by_front = {(r["front"], r["aggregation"]): r for r in result["fronts"] if r["endpoint"] == "auc"}
    assert by_front[("PGD-AT", "global")]["difference"] > 0.07
    assert abs(by_front[("budget ramp", "global")]["difference"]) < 0.005
    assert result["target_auc"] == "not met"


def test_the_mechanism_needs_the_changed_share_and_every_cells_margins(tmp_path):
    study = _study(tmp_path)
    _margins(study, moved=3.0, changed=0.2)  # moved enough, but too few margins change in the last third
    result = confirmation.judge(study, _records(study, {**FRONTS, "ima voxel eps_max 8": (0.93, 0.06)}))
    assert result["mechanism"]["verdict"] == "not met"
    other = _study(tmp_path / "other")
    _margins(other, moved=3.0, changed=0.4, skip="ima voxel eps_max 8 fold4 seed1")
    result = confirmation.judge(other, _records(other, {**FRONTS, "ima voxel eps_max 8": (0.93, 0.06)}))
    assert result["mechanism"]["verdict"] == "incomplete"
    assert result["mechanism"]["missing_margins"] == ["ima voxel eps_max 8 fold4 seed1"]


ACDC_IMA = "ima voxel eps_max 2 relative 0.8 delta 0.5"
ACDC_FRONTS = {  # clean Dice 0.74-0.76, slope 0.2 per eps unit; STD 0.775 clean and fragile
    "std": (0.775, 0.39),
    "pgd-at eps 0.75": (0.76, 0.2),
    "pgd-at eps 1": (0.75, 0.2),
    "pgd-at eps 1.5": (0.74, 0.2),
    "pgd-at eps 1 voxel-weighted": (0.76, 0.2),
    "pgd-at eps 1.5 voxel-weighted": (0.74, 0.2),
    "ramp 0.25 to eps 2 voxel-weighted": (0.75, 0.2),
}


def test_acdc_auc_is_over_eps_0_to_2_and_the_clean_target_needs_both_conditions(tmp_path):
    study = _study(tmp_path, "ima_confirm_acdc")
    _margins(study, moved=3.0, changed=0.4, delta=0.5)
    result = confirmation.judge(study, _records(study, {**ACDC_FRONTS, ACDC_IMA: (0.75, 0.15)}))
    assert result["missing"] == [] and result["cells"] == 48
    primary = [r for r in result["fronts"] if r["endpoint"] == "auc"]
    # AUC = mean Dice over eps 0..2: a slope 0.05 flatter gains 0.05 x mean eps 1 = 0.05
    assert len(primary) == 6 and all(r["difference"] == pytest.approx(0.05, abs=0.005) for r in primary)
    assert result["target_auc"] == "met" and result["mechanism"]["verdict"] == "met"
    target = result["clean_target"]
    assert target["std_clean"] == pytest.approx(0.775, abs=0.002)
    # within 0.03 of STD (>= 0.745) and >= 0.45 at eps 1: pgd-at eps 0.75 / 1 (0.56 / 0.55), their voxel-weighted
    # eps 1 twin, the ramp and IMA (0.60); not pgd-at eps 1.5 (0.74 clean), nor STD (0.39 at eps 1)
    assert sorted(target["settings"]) == sorted(
        [
            "pgd-at eps 0.75",
            "pgd-at eps 1",
            "pgd-at eps 1 voxel-weighted",
            "ramp 0.25 to eps 2 voxel-weighted",
            ACDC_IMA,
        ]
    )
    assert "**Clean-Dice target**" in confirmation.markdown(result)


def test_acdc_clean_target_lists_no_setting_when_every_robust_one_is_too_far_below_std(tmp_path):
    study = _study(tmp_path, "ima_confirm_acdc")
    _margins(study, moved=1.0, changed=0.4, delta=0.5)
    curves = {**ACDC_FRONTS, "std": (0.85, 0.42), ACDC_IMA: (0.75, 0.2)}
    result = confirmation.judge(study, _records(study, curves))
    assert result["clean_target"]["settings"] == []
    assert "no setting" in confirmation.markdown(result)
    assert result["mechanism"]["verdict"] == "not met"  # median moved 1 delta (0.5) of the 2 required
