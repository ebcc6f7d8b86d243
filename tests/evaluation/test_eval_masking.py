"""Gradient-masking checks: random search and a transfer attack flag a model whose gradients are masked,
and leave a model with honest gradients alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from imaseg.attacks import AttackSettings
from imaseg.cache.case_meta import CaseMeta
from imaseg.cache.reader import CachedCase
from imaseg.evaluation import checks, masking
from imaseg.evaluation.cells import CLEAN, CaseSettings, Cell, attack_case, case_record
from imaseg.evaluation.masking import Surrogate
from imaseg.summary import Checks, MaskingCheck, Summary

EPS = 0.2  # Linf: enough to push any voxel across the intensity boundaries (0.35, 0.65)
CELLS = [Cell(CLEAN, 0.0), Cell("pgd-linf", 0.0), Cell("pgd-linf", EPS)]


class Intensity(nn.Module):
    """Segments by intensity: class k wherever the voxel is closest to 0.2, 0.5 or 0.8 (honest gradients)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centres = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, *([1] * (x.dim() - 2)))
        return -100.0 * (x - centres) ** 2


class Masked(nn.Module):
    """The same prediction with a zero input gradient: gradient attacks cannot see where to go."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = Intensity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x).detach() + 0.0 * x.sum()


def _case(name: str, seed: int) -> CachedCase:
    """Two 24 x 24 slices (along the last axis) of a disc of class 1 with a core of class 2, on noise."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:24, :24]
    d = np.hypot(yy - 12 + g.uniform(-2, 2), xx - 12 + g.uniform(-2, 2))
    label = np.stack([(d < 8).astype(np.int64) + (d < 4)] * 2, -1)
    image = 0.2 + 0.3 * label + 0.02 * g.standard_normal(label.shape)
    meta = CaseMeta(name, slice_axis=2, shape=(1, 24, 24, 2))
    return CachedCase(name, image[None].astype(np.float32), label.astype(np.uint8), np.eye(4), np.eye(4), meta)


class Store:
    num_classes = 3

    def __init__(self) -> None:
        self.cases = {f"c{i}": _case(f"c{i}", i) for i in range(2)}

    def load_case(self, cid: str) -> CachedCase:
        return self.cases[cid]


def _context(network, surrogate=None) -> checks.CheckContext:
    settings = CaseSettings(AttackSettings(steps=5, losses=("ce",), clip_range=(0.0, 1.0)), 8, None)
    store = Store()
    return checks.CheckContext(
        network,
        store,
        list(store.cases),
        settings,
        torch.device("cpu"),
        5,
        False,
        True,
        surrogate,  # type: ignore[arg-type]
    )


def _records(context: checks.CheckContext) -> dict:
    records = {}
    for cell in CELLS:
        cases = {}
        for cid in context.cases:
            case = context.store.load_case(cid)
            output = attack_case(context.network, case, cell, context.settings, context.device)
            cases[cid] = case_record(output, case, 3, cell, hd95=False)
        records[cell.key] = {"cases": cases}
    return records


@pytest.mark.parametrize(("model", "flagged"), [(Intensity, False), (Masked, True)], ids=["honest", "masked"])
def test_random_search_and_transfer_flag_masked_gradients_only(model, flagged):
    context = _context(model(), Surrogate(Intensity(), "init.pt"))
    result = checks.sanity_checks(_records(context), CELLS, context)
    free, transfer = result.gradient_free, result.transfer
    assert free is not None and transfer is not None
    assert (free.attack, free.eps, free.gradient_attack, transfer.attack) == (
        "square-linf",
        EPS,
        "pgd-linf",
        "worst-linf",
    )
    assert transfer.surrogate == "init.pt" and free.cases == ["c0", "c1"]
    assert (free.ok, transfer.ok) == (not flagged, not flagged)
    assert sorted(result.failed()) == (["gradient_free", "transfer"] if flagged else [])
    masking_warnings = [w for w in result.warnings if "possible gradient masking" in w]
    assert len(masking_warnings) == (2 if flagged else 0)
    if flagged:
        assert free.dice is not None and free.dice < free.gradient_dice - masking.MASKING_MARGIN
        assert "random search (square-linf) reaches Dice" in masking_warnings[0]


def test_checks_can_be_switched_off_and_a_missing_surrogate_is_a_note():
    context = _context(Masked(), Surrogate(None, note="the run has no initialisation checkpoint (train.init)"))
    context = checks.CheckContext(**{**vars(context), "gradient_free_check": False})
    result = checks.sanity_checks(_records(context), CELLS, context)
    assert result.gradient_free is None
    assert result.transfer is not None and result.transfer.ok is None
    assert result.transfer.note == "the run has no initialisation checkpoint (train.init); skipped"
    assert result.failed() == []
    off = checks.CheckContext(**{**vars(context), "surrogate": None})
    assert checks.sanity_checks(_records(off), CELLS, off).transfer is None


@pytest.mark.parametrize(
    ("init", "says"),
    [
        (None, "no initialisation checkpoint"),
        ("/nowhere/init.pt", "could not be loaded (checkpoint /nowhere/init.pt does not exist)"),
    ],
    ids=["no-init", "init-gone"],
)
def test_without_a_loadable_init_there_is_no_surrogate_and_a_note(init, says):
    from types import SimpleNamespace

    session = SimpleNamespace(
        run=SimpleNamespace(train_settings=lambda: {"init": init}),
        loaded=SimpleNamespace(store=SimpleNamespace(manifest=SimpleNamespace(data_shape=None))),
        device=torch.device("cpu"),
    )
    surrogate = masking.load_surrogate(session)  # type: ignore[arg-type]
    assert surrogate.network is None and surrogate.source == init and says in str(surrogate.note)


@pytest.mark.parametrize(
    ("grid", "unit", "expected"),
    [
        ([0.0, 0.125, 0.25, 0.5, 1.0, 2.0], "l2", ("l2", 1.0)),
        ([0.0, 0.125, 0.25, 0.5, 1.0, 2.0], "rms", ("l2", 0.5)),
        ([0.0, 0.5], "l2", ("l2", 0.5)),
    ],
    ids=["eps-1", "rms-middle", "middle-is-above-0"],
)
def test_the_headline_budget(grid, unit, expected):
    cells = [Cell(CLEAN, 0.0), *(Cell("apgd-dice-l2", e) for e in grid), Cell("pgd-linf", 2 / 255)]
    assert checks.headline_budget(cells, unit) == expected


def test_the_steps_check_runs_at_the_headline_budget_not_the_largest(monkeypatch):
    cells = [Cell(CLEAN, 0.0), *(Cell("apgd-dice-l2", e) for e in (0.5, 1.0, 2.0))]
    monkeypatch.setattr(checks, "_global", lambda records, key: 0.5)
    assert checks._strongest({}, cells) == Cell("apgd-dice-l2", 1.0)


def test_summaries_with_and_without_the_masking_rows_load():
    old = {"classes": {"1": "a"}, "clean": {"dice": {}, "mean_dice": {}}, "attacks": {}, "checks": {"warnings": []}}
    assert Summary.from_json(old).checks.gradient_free is None
    row = MaskingCheck(
        attack="square-l2", eps=1.0, cases=["a"], dice=0.2, gradient_attack="worst-l2", gradient_dice=0.4
    )
    checks_ = Checks(gradient_free=row, transfer=MaskingCheck(attack="worst-l2", note="no init; skipped"))
    again = Checks.from_json(checks_.to_json())
    assert again == checks_ and "ok" not in again.to_json()["transfer"]
    assert Checks(gradient_free=MaskingCheck(ok=False)).failed() == ["gradient_free"]


def test_evaluate_reports_both_checks_by_default(evaluated):
    result = Checks.from_json(evaluated.summary["checks"])
    free, transfer = result.gradient_free, result.transfer
    assert free is not None and (free.attack, free.eps, free.cases) == (
        "square-l2",
        1.0,
        evaluated.summary["cases"][:3],
    )
    assert free.dice is not None and free.ok == (free.dice >= free.gradient_dice - masking.MASKING_MARGIN)
    assert transfer is not None and transfer.ok is None and "no initialisation checkpoint" in str(transfer.note)


def test_the_report_says_each_check_in_words():
    from imaseg.report.diagnostics import _masking_words

    flagged = MaskingCheck(
        attack="square-l2", eps=1.0, cases=["a", "b"], dice=0.2, gradient_attack="worst-l2", gradient_dice=0.4, ok=False
    )
    assert _masking_words(flagged, "random search (gradient-free)") == (
        "gradient masking, random search (gradient-free): square-l2 at eps 1 on 2 cases reaches Dice 0.200; the "
        "gradient attacks' worst (worst-l2) 0.400 (FAILED: possible gradient masking)."
    )
    skipped = MaskingCheck(attack="worst-l2", eps=1.0, note="no train.init; skipped")
    assert _masking_words(skipped, "transfer") == (
        "gradient masking, transfer (worst-l2) at eps 1: not run (no train.init; skipped)."
    )
