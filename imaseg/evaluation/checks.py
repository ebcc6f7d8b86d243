"""Sanity checks of an evaluation, each able to fail (``ok: false``, and a line in ``warnings``):

- ``forward_deterministic``: every attack at eps = 0 gives exactly the clean Dice (the forward pass is
  deterministic and the eps-0 path changes nothing);
- ``noise_weaker_than_attack``: same-budget random noise never beats a gradient attack;
- ``dice_falls_with_eps``: along each attack's budget grid, Dice never rises by more than 0.005;
- ``steps_2x``: the strongest single attack at the headline budget (:func:`headline_budget`), rerun on a
  few cases with twice the steps *and the same absolute step size* (so the longer path contains the shorter
  one's reach), must neither end higher (gradient masking) nor drop by more than 0.02 (not converged);
- ``gradient_free`` and ``transfer`` (:mod:`imaseg.evaluation.masking`): random search, and the default
  ensemble crafted on a surrogate model, must not end below the gradient attacks at the headline budget.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from imaseg.evaluation.cells import CLEAN, CaseSettings, Cell, attack_case, case_record
from imaseg.evaluation.masking import Surrogate, gradient_free_check, transfer_check
from imaseg.evaluation.metrics import aggregate_dice
from imaseg.summary import Checks, DeterminismCheck, MonotoneCheck, NoiseCheck, StepsCheck

if TYPE_CHECKING:
    import torch

    from imaseg.cache.reader import CaseStore

__all__ = ["MASKING_TOLERANCE", "NOT_CONVERGED", "CheckContext", "failed_checks", "headline_budget", "sanity_checks"]

NOT_CONVERGED = 0.02  # Dice drop with 2x steps above which the attack has not converged
MASKING_TOLERANCE = 0.01  # Dice rise with 2x steps above which the gradients mislead (masking)
MONOTONE_TOLERANCE = 0.005  # Dice rise from one budget to the next above which something is off


@dataclass(frozen=True)
class CheckContext:
    """What the steps and masking checks need to attack a few cases again (``surrogate``: the transfer
    check's source model, ``None`` to skip that check)."""

    network: Callable
    store: CaseStore
    cases: list[str]
    settings: CaseSettings
    device: torch.device
    steps: int
    steps_check: bool
    gradient_free_check: bool = False
    surrogate: Surrogate | None = None


def _global(records: dict, key: str) -> float:
    return float(np.nanmean(aggregate_dice(records[key]["cases"])["global"]))


def _forward_deterministic(records: dict, cells: list[Cell], cases: list[str], warnings: list[str]) -> DeterminismCheck:
    clean = records[CLEAN]["cases"]
    diffs = [
        abs(a - b)
        for cell in cells
        if cell.eps == 0 and not cell.is_clean
        for cid in cases
        for a, b in zip(records[cell.key]["cases"][cid]["dice"], clean[cid]["dice"])
        if a == a and b == b
    ]
    worst = max(diffs, default=0.0)
    if worst != 0.0:
        warnings.append(f"eps = 0 differs from clean Dice by up to {worst:.4g}: the forward pass is not deterministic")
    return DeterminismCheck(max_abs_diff=worst, ok=worst == 0.0)


def _noise_weaker(records: dict, cells: list[Cell], warnings: list[str]) -> list[NoiseCheck]:
    mean = {key: _global(records, key) for key in records}
    rows = []
    noise = [c for c in cells if c.spec is not None and not c.spec.gradient and c.eps > 0]
    for cell in noise:
        for other in cells:
            spec = other.spec
            if other.eps != cell.eps or other.norm != cell.norm or spec is None or not spec.gradient or spec.ensemble:
                continue
            ok = mean[cell.key] >= mean[other.key] - 1e-3
            rows.append(
                NoiseCheck(
                    eps=cell.eps,
                    noise=cell.attack,
                    attack=other.attack,
                    noise_dice=mean[cell.key],
                    attack_dice=mean[other.key],
                    ok=ok,
                )
            )
            if not ok:
                warnings.append(f"{cell.attack} is stronger than {other.attack} at eps {cell.eps}: check the attack")
    return rows


def _dice_falls_with_eps(records: dict, cells: list[Cell], warnings: list[str]) -> list[MonotoneCheck]:
    rows = []
    for attack in dict.fromkeys(c.attack for c in cells if not c.is_clean):
        grid = sorted((c for c in cells if c.attack == attack), key=lambda c: c.eps)
        for lower, higher in zip(grid, grid[1:]):
            rise = _global(records, higher.key) - _global(records, lower.key)
            ok = rise <= MONOTONE_TOLERANCE
            rows.append(MonotoneCheck(attack=attack, eps=[lower.eps, higher.eps], rise=rise, ok=ok))
            if not ok:
                warnings.append(
                    f"{attack}: Dice rises by {rise:.3f} from eps {lower.eps:g} to {higher.eps:g}; a larger budget "
                    "must not help the model (raise --steps or --restarts)"
                )
    return rows


def _steps_2x(records: dict, cell: Cell, context: CheckContext, warnings: list[str]) -> StepsCheck:
    subset = context.cases[:3]
    once, twice = [], []
    step_size = float("nan")
    for cid in subset:
        case = context.store.load_case(cid)
        once.append(records[cell.key]["cases"][cid])
        # the evaluated run's absolute step (fixed-step kinds): 2.5 eps / steps, eps as the case's L2 budget
        step_size = 2.5 * float(records[cell.key]["cases"][cid].get("eps_l2", cell.eps)) / max(context.steps, 1)
        settings = replace(context.settings, attack=replace(context.settings.attack, step_size=step_size))
        double = attack_case(context.network, case, cell, settings, context.device, steps=2 * context.steps)
        twice.append(
            case_record(double, case, context.store.num_classes, cell, hd95=False, eps_unit=context.settings.eps_unit)
        )
    d1 = float(np.nanmean(aggregate_dice(dict(enumerate(once)))["global"]))
    d2 = float(np.nanmean(aggregate_dice(dict(enumerate(twice)))["global"]))
    masking, not_converged = d2 > d1 + MASKING_TOLERANCE, d2 < d1 - NOT_CONVERGED
    if masking:
        warnings.append(
            f"Dice at {2 * context.steps} steps ({d2:.3f}) is higher than at {context.steps} ({d1:.3f}) with the same "
            "step size: possible gradient masking"
        )
    elif not_converged:
        warnings.append(
            f"Dice drops from {d1:.3f} to {d2:.3f} with {2 * context.steps} steps: the attack has not converged; "
            "raise --steps"
        )
    return StepsCheck(
        attack=cell.attack,
        eps=cell.eps,
        cases=subset,
        step_size=step_size,
        dice_steps=d1,
        dice_2x_steps=d2,
        ok=not (masking or not_converged),
    )


def headline_budget(cells: list[Cell], eps_unit: str = "l2") -> tuple[str, float] | None:
    """``(norm, eps)`` the report leads with: L2 before Linf (as the main attack), then eps 1 when the L2 grid
    (in L2 units) holds it, else the middle of the norm's grid (as the report's per-case table), else its
    smallest budget above 0; ``None`` without a gradient attack above eps 0.

    >>> headline_budget([Cell("pgd-l2", e) for e in (0.0, 0.25, 0.5, 1.0, 2.0)])
    ('l2', 1.0)
    >>> headline_budget([Cell("pgd-linf", e) for e in (0.0, 1 / 255, 2 / 255, 4 / 255)])[1] * 255
    2.0
    """
    attacked = [c for c in cells if c.spec is not None and c.spec.gradient and c.eps > 0 and c.norm in ("l2", "linf")]
    if not attacked:  # no Lp gradient attack (e.g. physical kinds only): no headline Lp budget
        return None
    norm = "l2" if any(c.norm == "l2" for c in attacked) else "linf"
    grid = sorted({c.eps for c in cells if not c.is_clean and c.norm == norm})
    if norm == "l2" and eps_unit == "l2" and 1.0 in grid:
        return norm, 1.0
    middle = grid[len(grid) // 2]
    return norm, middle if middle > 0 else min(c.eps for c in attacked if c.norm == norm)


def _strongest(records: dict, cells: list[Cell], eps_unit: str = "l2") -> Cell | None:
    """The single gradient attack with the lowest Dice at the headline budget."""
    budget = headline_budget(cells, eps_unit)
    candidates = [
        c for c in cells if c.spec is not None and c.spec.gradient and not c.spec.ensemble and (c.norm, c.eps) == budget
    ]
    return min(candidates, key=lambda c: _global(records, c.key), default=None)


def sanity_checks(records: dict, cells: list[Cell], context: CheckContext) -> Checks:
    """All checks, each with its numbers and ``ok``; ``warnings`` lists what failed, in words."""
    warnings: list[str] = []
    deterministic = _forward_deterministic(records, cells, context.cases, warnings)
    noise = _noise_weaker(records, cells, warnings)
    falls = _dice_falls_with_eps(records, cells, warnings)
    strongest = _strongest(records, cells, context.settings.eps_unit)
    steps = _steps_2x(records, strongest, context, warnings) if context.steps_check and strongest is not None else None
    budget = headline_budget(cells, context.settings.eps_unit)
    gradient_free = transfer = None
    if budget is not None and context.gradient_free_check:
        gradient_free = gradient_free_check(records, cells, *budget, context, warnings)
    if budget is not None and context.surrogate is not None:
        transfer = transfer_check(records, cells, *budget, context, warnings)
    return Checks(
        warnings=warnings,
        forward_deterministic=deterministic,
        noise_weaker_than_attack=noise,
        dice_falls_with_eps=falls,
        steps_2x=steps,
        gradient_free=gradient_free,
        transfer=transfer,
    )


def failed_checks(checks: Checks | Mapping) -> list[str]:
    """Names of the checks with any ``ok: false`` (:meth:`imaseg.summary.Checks.failed`, the one rule)."""
    return (checks if isinstance(checks, Checks) else Checks.from_json(checks)).failed()
