"""What an evaluation will compute: its cells, the settings every attack shares, and their fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace

import torch

from imaseg.attacks import AttackSettings, parse_attack_name
from imaseg.attacks.hu_shift import DEFAULT_HU_PER_UNIT
from imaseg.config import to_dict
from imaseg.evaluation.cells import CLEAN, CaseSettings, Cell
from imaseg.evaluation.config import EvalConfig

__all__ = ["attack_settings", "case_settings", "fingerprint", "plan_cells", "worst_members"]

# The settings whose change makes stored cells stale (the budget grid and attack list only add or drop cells).
FINGERPRINTED = ("steps", "restarts", "losses", "seed", "clip_range", "roi_size", "amp")


def plan_cells(config: EvalConfig) -> list[Cell]:
    """The clean cell, every attack at every budget of its norm (a physical kind: its own grid), then the ensemble
    (worst-case) cells."""
    cells = [Cell(CLEAN, 0.0)]
    ensembles = []
    for name in config.attacks:
        spec, norm = parse_attack_name(name)
        grid = config.eps if norm == "l2" else config.eps_linf if norm == "linf" else spec.budgets
        planned = [Cell(name.lower(), float(e)) for e in grid]
        if spec.ensemble:
            ensembles += planned
        else:
            cells += planned
    return cells + ensembles


def worst_members(cell: Cell, cells: list[Cell]) -> list[Cell]:
    """The cells an ensemble cell takes the per-sample worst over: same norm and budget, not ensembles."""
    members = [
        c
        for c in cells
        if not c.is_clean and c.norm == cell.norm and c.eps == cell.eps and c.spec is not None and not c.spec.ensemble
    ]
    if not members:
        raise ValueError(f"{cell.attack} needs at least one {cell.norm} attack in `attacks`")
    return members


def attack_settings(config: EvalConfig) -> AttackSettings:
    """The settings every attack of the evaluation shares."""
    return AttackSettings(
        steps=config.steps,
        restarts=config.restarts,
        losses=tuple(config.losses),
        clip_range=config.clip_range,
        seed=config.seed,
        autocast_dtype=torch.bfloat16 if config.amp else None,
    )


def case_settings(
    config: EvalConfig, spatial_dims: int, spatial_size, hu_per_unit: float | None = None
) -> CaseSettings:
    """:class:`CaseSettings` with the 3D window from the config or the training size, and the HU scale of CT
    inputs (``ct-intensity-hu`` budgets)."""
    size = config.roi_size or spatial_size
    roi = tuple(int(s) for s in size) if (size and spatial_dims == 3) else None
    attack = replace(attack_settings(config), hu_per_unit=hu_per_unit)
    return CaseSettings(attack, config.batch_size, roi, config.eps_unit, config.postprocess)


def fingerprint(
    config: EvalConfig, checkpoint: os.PathLike[str] | str, cases: list[str], hu_per_unit: float | None = None
) -> str:
    """Identifies stored cells: the fingerprinted settings, the checkpoint file (path, size, time), the cases, and
    the HU scale of budgets in HU where it is not the default one (cells stored before it existed used 1400)."""
    relevant = {k: v for k, v in to_dict(config).items() if k in FINGERPRINTED}
    if hu_per_unit is not None and hu_per_unit != DEFAULT_HU_PER_UNIT:
        relevant["hu_per_unit"] = hu_per_unit
    if config.eps_unit != "l2":  # cells stored before eps_unit existed stay valid for L2 budgets
        relevant["eps_unit"] = config.eps_unit
    if config.postprocess != "none":  # likewise for raw predictions: cells stored before it existed stay valid
        relevant["postprocess"] = config.postprocess
    stat = os.stat(checkpoint)
    blob = json.dumps([relevant, str(checkpoint), stat.st_size, stat.st_mtime_ns, cases], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
