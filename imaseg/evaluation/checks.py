"""Sanity checks of an evaluation: eps = 0 equals clean, noise is weaker than gradient attacks, and
twice the steps do not leave the model better off (gradient masking) or much worse (not converged)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from imaseg.evaluation.cells import CaseSettings, Cell, attack_case, case_record
from imaseg.evaluation.metrics import aggregate_dice

if TYPE_CHECKING:
    import torch

    from imaseg.cache.reader import CaseStore

__all__ = ["CheckContext", "sanity_checks"]


@dataclass(frozen=True)
class CheckContext:
    """What the steps check needs to attack a few cases again."""

    network: Callable
    store: CaseStore
    cases: list[str]
    settings: CaseSettings
    device: torch.device
    steps: int
    steps_check: bool


def _eps0_equals_clean(records: dict, cells: list[Cell], cases: list[str], warnings: list[str]) -> dict:
    clean = records["clean"]["cases"]
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
        warnings.append(f"eps = 0 differs from clean Dice by up to {worst:.4g}")
    return {"max_abs_diff": worst, "ok": worst == 0.0}


def _noise_weaker(records: dict, cells: list[Cell], warnings: list[str]) -> list[dict]:
    mean = {key: float(np.nanmean(aggregate_dice(r["cases"])["global"])) for key, r in records.items()}
    rows = []
    noise = [c for c in cells if c.spec is not None and not c.spec.gradient and c.eps > 0]
    for cell in noise:
        for other in cells:
            spec = other.spec
            if other.eps != cell.eps or other.norm != cell.norm or spec is None or not spec.gradient or spec.ensemble:
                continue
            ok = mean[cell.key] >= mean[other.key] - 1e-3
            rows.append(
                {
                    "eps": cell.eps,
                    "noise": cell.attack,
                    "attack": other.attack,
                    "noise_dice": mean[cell.key],
                    "attack_dice": mean[other.key],
                    "ok": ok,
                }
            )
            if not ok:
                warnings.append(f"{cell.attack} is stronger than {other.attack} at eps {cell.eps}: check the attack")
    return rows


def _steps_2x(records: dict, cell: Cell, context: CheckContext, warnings: list[str]) -> dict:
    subset = context.cases[:3]
    once, twice = [], []
    for cid in subset:
        case = context.store.load_case(cid)
        once.append(records[cell.key]["cases"][cid])
        double = attack_case(context.network, case, cell, context.settings, context.device, steps=2 * context.steps)
        twice.append(case_record(double, case, context.store.num_classes, cell, hd95=False))
    d1 = float(np.nanmean(aggregate_dice(dict(enumerate(once)))["global"]))
    d2 = float(np.nanmean(aggregate_dice(dict(enumerate(twice)))["global"]))
    if d2 > d1 + 0.01:
        warnings.append(
            f"Dice at {2 * context.steps} steps ({d2:.3f}) is higher than at {context.steps} ({d1:.3f}): possible gradient masking"
        )
    elif d2 < d1 - 0.02:
        warnings.append(
            f"Dice drops from {d1:.3f} to {d2:.3f} with {2 * context.steps} steps: the attack has not converged; raise --steps"
        )
    return {
        "attack": cell.attack,
        "eps": cell.eps,
        "cases": subset,
        "dice_steps": d1,
        "dice_2x_steps": d2,
        "ok": d2 <= d1 + 0.01,
    }


def sanity_checks(records: dict, cells: list[Cell], context: CheckContext) -> dict:
    """All checks, each with its numbers and ``ok``; ``warnings`` lists what failed, in words."""
    warnings: list[str] = []
    checks: dict = {"warnings": warnings}
    checks["eps0_equals_clean"] = _eps0_equals_clean(records, cells, context.cases, warnings)
    checks["noise_weaker_than_attack"] = _noise_weaker(records, cells, warnings)
    rerun = [c for c in cells if c.spec is not None and c.spec.uses_losses and c.eps > 0]
    if context.steps_check and rerun:
        checks["steps_2x"] = _steps_2x(records, max(rerun, key=lambda c: c.eps), context, warnings)
    return checks
