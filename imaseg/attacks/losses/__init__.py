"""Per-voxel attack objectives, reduced to one value per sample. Registered by name."""

from imaseg.attacks.losses.base import ATTACK_LOSSES, AttackLoss, build_attack_loss, register_attack_loss
from imaseg.attacks.losses.cospgd import CosPGDAttackLoss
from imaseg.attacks.losses.cross_entropy import CrossEntropyAttackLoss
from imaseg.attacks.losses.dice_ce import DiceCEAttackLoss
from imaseg.attacks.losses.segpgd import SegPGDAttackLoss
from imaseg.attacks.losses.soft_dice import SoftDiceAttackLoss

__all__ = [
    "ATTACK_LOSSES",
    "AttackLoss",
    "CosPGDAttackLoss",
    "CrossEntropyAttackLoss",
    "DiceCEAttackLoss",
    "SegPGDAttackLoss",
    "SoftDiceAttackLoss",
    "build_attack_loss",
    "register_attack_loss",
]
