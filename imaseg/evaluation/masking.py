"""Gradient-masking checks: attacks that do not follow the evaluated model's gradients must not beat those that do.

- ``gradient_free``: random search (:mod:`imaseg.attacks.square`, ``square-NORM``) on a few cases at the
  headline budget, against the worst gradient attack of the evaluation on the same cases;
- ``transfer``: the default ensemble (``worst-NORM``) crafted on a surrogate (the run's initialisation
  checkpoint ``train.init``) and applied to the evaluated model, against the same white-box worst case.

A model whose gradients are zero, wrong or non-differentiable resists gradient attacks without being robust;
either attack ending lower than the white-box worst case (by more than :data:`MASKING_MARGIN`) says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imaseg.evaluation.cells import CLEAN, Cell, attack_case, case_record
from imaseg.evaluation.metrics import aggregate_dice
from imaseg.summary import MaskingCheck

if TYPE_CHECKING:
    from imaseg.evaluation.checks import CheckContext
    from imaseg.evaluation.session import EvaluationSession

__all__ = ["MASKING_CASES", "MASKING_MARGIN", "Surrogate", "gradient_free_check", "load_surrogate", "transfer_check"]

logger = logging.getLogger(__name__)

MASKING_CASES = 3  # cases the masking checks attack again
MASKING_MARGIN = 0.01  # global Dice by which a non-gradient attack may end below the gradient attacks


@dataclass(frozen=True)
class Surrogate:
    """The transfer check's source model: a network, or ``None`` and why not."""

    network: Callable | None
    source: str | None = None
    note: str | None = None


def load_surrogate(session: EvaluationSession) -> Surrogate:
    """The run's initialisation checkpoint (``train.init``) rebuilt like the run's network; ``None`` with a note
    when the run has none or it cannot be loaded."""
    from imaseg.run_model import load_network

    train = session.run.train_settings()
    init = train.get("init")
    if not init:
        return Surrogate(None, note="the run has no initialisation checkpoint (train.init): no surrogate")
    try:
        network, _ = load_network(
            Path(init), train, session.loaded.store.manifest.data_shape, session.device, source="train.init"
        )
    except (OSError, ValueError, KeyError) as error:
        logger.warning("transfer check skipped: %s", error)
        return Surrogate(None, str(init), note=f"the initialisation checkpoint could not be loaded ({error})")
    return Surrogate(network, str(init))


def _subset_global(records: dict, key: str, cases: list[str]) -> float:
    return float(np.nanmean(aggregate_dice({cid: records[key]["cases"][cid] for cid in cases})["global"]))


def _gradient_worst(records: dict, cells: list[Cell], norm: str, eps: float, cases: list[str]) -> tuple[str, float]:
    """The gradient attack (ensembles included) with the lowest global Dice on ``cases`` at this budget."""
    gradient = [c for c in cells if c.spec is not None and c.spec.gradient and c.norm == norm and c.eps == eps]
    dice = {c.attack: _subset_global(records, c.key, cases) for c in gradient}
    worst = min(dice, key=dice.__getitem__, default="")
    return worst, dice.get(worst, float("nan"))


def _verdict(row: MaskingCheck, warnings: list[str], what: str) -> MaskingCheck:
    dice = row.dice
    if dice is None:  # not run
        return row
    ok = not dice < row.gradient_dice - MASKING_MARGIN
    if not ok:
        warnings.append(
            f"{what} ({row.attack}) reaches Dice {dice:.3f} at eps {row.eps:g} on {len(row.cases)} cases, below "
            f"the gradient attacks' worst ({row.gradient_attack}: {row.gradient_dice:.3f}): possible gradient masking; "
            "the robust numbers overstate robustness"
        )
    return replace(row, ok=ok)


def _score(network, cases: list[str], cell: Cell, context: CheckContext, *, source=None) -> float:
    """Global Dice over ``cases`` of ``network`` under ``cell``; with a ``source`` network the perturbation is
    crafted on it and applied to ``network`` (transfer)."""
    records = {}
    settings = context.settings
    for cid in cases:
        case = context.store.load_case(cid)
        if source is None:
            output = attack_case(network, case, cell, settings, context.device)
        else:
            crafted = attack_case(source, case, cell, settings, context.device, keep_perturbation=True)
            assert crafted.perturbation is not None  # kept on request
            moved = replace(case, image=(case.image + crafted.perturbation).astype(case.image.dtype))
            output = attack_case(network, moved, Cell(CLEAN, 0.0), settings, context.device)
        records[cid] = case_record(
            output, case, context.store.num_classes, cell, hd95=False, eps_unit=settings.eps_unit
        )
    return float(np.nanmean(aggregate_dice(records)["global"]))


def gradient_free_check(
    records: dict, cells: list[Cell], norm: str, eps: float, context: CheckContext, warnings: list[str]
) -> MaskingCheck | None:
    """Random search at ``eps`` on the first cases against the gradient attacks' worst on them."""
    cases = context.cases[:MASKING_CASES]
    worst, worst_dice = _gradient_worst(records, cells, norm, eps, cases)
    if not worst:
        return None
    cell = Cell(f"square-{norm}", eps)
    row = MaskingCheck(
        attack=cell.attack,
        eps=eps,
        cases=cases,
        dice=_score(context.network, cases, cell, context),
        gradient_attack=worst,
        gradient_dice=worst_dice,
    )
    return _verdict(row, warnings, "random search")


def transfer_check(
    records: dict, cells: list[Cell], norm: str, eps: float, context: CheckContext, warnings: list[str]
) -> MaskingCheck | None:
    """The default ensemble crafted on the surrogate, applied to the evaluated model, against its white-box worst."""
    cases = context.cases[:MASKING_CASES]
    worst, worst_dice = _gradient_worst(records, cells, norm, eps, cases)
    surrogate = context.surrogate
    if not worst or surrogate is None:
        return None
    cell = Cell(f"worst-{norm}", eps)
    row = MaskingCheck(attack=cell.attack, eps=eps, cases=cases, gradient_attack=worst, gradient_dice=worst_dice)
    if surrogate.network is None:
        return replace(row, surrogate=surrogate.source, note=f"{surrogate.note}; skipped")
    dice = _score(context.network, cases, cell, context, source=surrogate.network)
    return _verdict(replace(row, dice=dice, surrogate=surrogate.source), warnings, "a transfer attack")
