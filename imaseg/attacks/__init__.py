"""Segmentation-aware attacks: PGD (L2 / Linf, per-sample budgets, restarts, per-voxel flip record),
pluggable per-voxel losses (CE, soft Dice, Dice+CE, SegPGD, CosPGD), noise baselines, per-sample worst
case over attacks, and a differentiable sliding-window forward for whole volumes."""

from imaseg.attacks.base import Attack, AttackResult, frozen_model
from imaseg.attacks.ensemble import WorstCase
from imaseg.attacks.factory import ATTACK_NAMES, create_attack
from imaseg.attacks.losses import ATTACK_LOSSES, AttackLoss, build_attack_loss, register_attack_loss
from imaseg.attacks.margin_search import DicePredicate, MarginSearch
from imaseg.attacks.noise import NoiseAttack
from imaseg.attacks.pgd import PGD, keep_worse
from imaseg.attacks.sliding_window import SlidingWindowForward
from imaseg.attacks.trades import TradesAttack

__all__ = [
    "ATTACK_LOSSES",
    "ATTACK_NAMES",
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
