"""Segmentation-aware attacks: PGD and APGD (L2 / Linf, per-sample budgets, restarts, per-voxel flip record),
pluggable per-voxel losses (CE, soft Dice, Dice+CE, SegPGD, CosPGD, DLR), noise baselines, per-sample worst
case over attacks, and a differentiable sliding-window forward for whole volumes."""

from imaseg.attacks.apgd import APGD
from imaseg.attacks.base import Attack, frozen_model
from imaseg.attacks.ensemble import WorstCase
from imaseg.attacks.losses import ATTACK_LOSSES, AttackLoss, build_attack_loss, register_attack_loss
from imaseg.attacks.margin_search import DicePredicate, MarginSearch
from imaseg.attacks.noise import NoiseAttack
from imaseg.attacks.pgd import PGD
from imaseg.attacks.registry import (
    ATTACKS,
    AttackSettings,
    AttackSpec,
    attack_names,
    attack_spec,
    create_attack,
    parse_attack_name,
    register_attack,
)
from imaseg.attacks.result import AttackResult, keep_worse
from imaseg.attacks.sliding_window import SlidingWindowForward
from imaseg.attacks.trades import TradesAttack

__all__ = [
    "APGD",
    "ATTACK_LOSSES",
    "ATTACKS",
    "AttackSettings",
    "AttackSpec",
    "attack_names",
    "attack_spec",
    "parse_attack_name",
    "register_attack",
    "PGD",
    "Attack",
    "AttackLoss",
    "AttackResult",
    "NoiseAttack",
    "SlidingWindowForward",
    "WorstCase",
    "MarginSearch",
    "DicePredicate",
    "TradesAttack",
    "build_attack_loss",
    "create_attack",
    "frozen_model",
    "keep_worse",
    "register_attack_loss",
]
