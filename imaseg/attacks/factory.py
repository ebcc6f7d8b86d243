"""Attacks by name, for configs and the command line: ``KIND-NORM``, e.g. ``pgd-l2``, ``segpgd-linf``.

Kinds: ``pgd`` (PGD with the given ``losses``; several losses -> per-sample worst case over them),
``segpgd`` and ``cospgd`` (PGD with that per-voxel weighting), ``noise`` (Gaussian) and
``uniform`` (uniform noise), both on the eps-sphere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from imaseg.attacks.base import Attack
from imaseg.attacks.ensemble import WorstCase
from imaseg.attacks.geometry import NORMS
from imaseg.attacks.noise import NoiseAttack
from imaseg.attacks.pgd import PGD

__all__ = ["ATTACK_KINDS", "ATTACK_NAMES", "create_attack", "parse_attack_name"]

ATTACK_KINDS = ("pgd", "segpgd", "cospgd", "noise", "uniform")
ATTACK_NAMES = tuple(f"{kind}-{norm}" for kind in ATTACK_KINDS for norm in NORMS)


def parse_attack_name(name: str) -> tuple[str, str]:
    """``"pgd-l2" -> ("pgd", "l2")``; raises listing the valid names."""
    kind, _, norm = name.lower().rpartition("-")
    if kind not in ATTACK_KINDS or norm not in NORMS:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(ATTACK_NAMES)}")
    return kind, norm


def create_attack(
    name: str,
    model,
    *,
    eps: float | torch.Tensor,
    steps: int = 20,
    restarts: int = 1,
    losses: Sequence[str] = ("ce", "dice"),
    clip_range: tuple[float, float] | None = None,
    seed: int = 0,
    autocast_dtype: torch.dtype | None = None,
    record_flips: bool = False,
    noise_draws: int = 1,
) -> Attack:
    """Build the attack called ``name`` (see the module docstring)."""
    kind, norm = parse_attack_name(name)
    common = {"eps": eps, "norm": norm, "clip_range": clip_range, "seed": seed, "autocast_dtype": autocast_dtype}
    if kind in ("noise", "uniform"):
        return NoiseAttack(
            model, distribution="gaussian" if kind == "noise" else "uniform", draws=noise_draws, **common
        )
    pgd = {"steps": steps, "restarts": restarts, "record_flips": record_flips, **common}
    if kind in ("segpgd", "cospgd"):
        return PGD(model, loss=kind, **pgd)
    losses = list(losses)
    if not losses:
        raise ValueError("`losses` must name at least one attack loss for pgd")
    if len(losses) == 1:
        return PGD(model, loss=losses[0], **pgd)
    return WorstCase([PGD(model, loss=loss, **pgd) for loss in losses])
