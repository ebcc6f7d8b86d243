"""Sanity checks that can fail: the rules on constructed numbers, and ``imaseg evaluate --strict``."""

from __future__ import annotations

import importlib

import pytest

from imaseg.evaluation import checks
from imaseg.evaluation.cells import Cell
from imaseg.evaluation.checks import failed_checks


def _cells(attack: str, grid: list[float]) -> list[Cell]:
    return [Cell("clean", 0.0), *(Cell(attack, e) for e in grid)]


@pytest.mark.parametrize(
    ("dice", "ok"),
    [([0.9, 0.6, 0.3], [True, True]), ([0.9, 0.6, 0.62], [True, False]), ([0.9, 0.6, 0.604], [True, True])],
    ids=["falling", "rising-by-0.02", "within-tolerance"],
)
def test_dice_must_not_rise_with_the_budget(monkeypatch, dice, ok):
    cells = _cells("apgd-dice-l2", [0.0, 0.5, 1.0])
    by_key = {"clean": 0.9, **{c.key: d for c, d in zip(cells[1:], dice)}}
    monkeypatch.setattr(checks, "_global", lambda records, key: by_key[key])
    warnings: list[str] = []
    rows = checks._dice_falls_with_eps({}, cells, warnings)
    assert [r.ok for r in rows] == ok
    assert len(warnings) == ok.count(False)


def test_the_strongest_single_attack_is_rerun(monkeypatch):
    cells = [
        Cell("clean", 0.0),
        Cell("cospgd-l2", 1.0),
        Cell("apgd-dice-l2", 1.0),
        Cell("noise-l2", 1.0),
        Cell("worst-l2", 1.0),
        Cell("apgd-dice-l2", 0.5),
    ]
    dice = {"cospgd-l2__eps1": 0.3, "apgd-dice-l2__eps1": 0.2, "noise-l2__eps1": 0.1, "worst-l2__eps1": 0.1}
    monkeypatch.setattr(checks, "_global", lambda records, key: dice.get(key, 0.5))
    assert checks._strongest({}, cells) == Cell("apgd-dice-l2", 1.0), "noise and ensembles are not rerun"


@pytest.mark.parametrize(
    ("once", "twice", "ok", "says"),
    [(0.30, 0.29, True, None), (0.30, 0.25, False, "has not converged"), (0.30, 0.33, False, "gradient masking")],
    ids=["consistent", "not-converged", "masking"],
)
def test_steps_check_fails_both_ways(monkeypatch, once, twice, ok, says):
    calls = iter([once, twice])
    monkeypatch.setattr(checks, "aggregate_dice", lambda records: {"global": [next(calls)]})
    monkeypatch.setattr(checks, "attack_case", lambda *a, **k: None)
    monkeypatch.setattr(checks, "case_record", lambda *a, **k: {})

    class Store:
        num_classes = 2

        def load_case(self, cid):
            return None

    from imaseg.attacks import AttackSettings
    from imaseg.evaluation.cells import CaseSettings

    context = checks.CheckContext(None, Store(), ["a"], CaseSettings(AttackSettings(), 4, None), None, 20, True)
    warnings: list[str] = []
    row = checks._steps_2x({"pgd-l2__eps1": {"cases": {"a": {}}}}, Cell("pgd-l2", 1.0), context, warnings)
    assert row.ok is ok and row.step_size == pytest.approx(2.5 / 20)
    assert (says is None and not warnings) or (says in warnings[0])


def test_failed_checks_lists_every_check_with_a_failure():
    result = {
        "warnings": ["x"],
        "forward_deterministic": {"ok": True},
        "noise_weaker_than_attack": [{"ok": True}, {"ok": False}],
        "steps_2x": {"ok": False},
    }
    assert failed_checks(result) == ["noise_weaker_than_attack", "steps_2x"]


@pytest.mark.parametrize(("strict", "code"), [(False, 0), (True, 3)], ids=["lenient", "strict"])
def test_strict_exits_non_zero_on_a_failed_check(copy_run, monkeypatch, strict, code):
    from imaseg.cli import main

    evaluate_module = importlib.import_module("imaseg.evaluation.evaluate")
    failing = {"warnings": ["forced"], "forward_deterministic": {"max_abs_diff": 0.1, "ok": False}}
    monkeypatch.setattr(evaluate_module, "sanity_checks", lambda *a, **k: failing)
    argv = [
        "evaluate",
        "--run",
        str(copy_run()),
        "--attacks",
        "noise-l2",
        "--eps",
        "0",
        "--no-hd95",
        "--overlays",
        "0",
        "--no-progress",
    ]
    assert main([*argv, *(["--strict"] if strict else [])]) == code
