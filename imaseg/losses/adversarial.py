"""The adversarial term of robust training, as registered losses: so a loss is credited where it belongs.

``dice-ce`` is the usual per-sample soft Dice + cross entropy on the adversarial prediction (PGD-AT,
IMA sample mode). ``voxel-weighted`` is the term IMA's voxel mode introduced: cross entropy weighted 1 on
*vulnerable* voxels (wrong on the clean input, or flipped along the attack path inside the budget) and
``robust_weight`` on voxels already robust beyond it, normalised per sample, plus the per-sample soft
Dice. As an option of PGD-AT (``--adversarial-loss voxel-weighted``) it is a baseline of its own, so a
gain of IMA's voxel mode can be split into what its margins earn and what this loss earns.

>>> import torch
>>> loss = build_adversarial_loss("voxel-weighted", robust_weight=0.1)
>>> logits, label = torch.zeros(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
>>> flips = torch.full((2, 4, 4), float("inf"))
>>> tuple(loss(logits, label, clean_prediction=label, flip_radius=flips).shape)
(2,)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from imaseg.functional import dice_ce_per_sample, soft_dice_per_sample, weighted_ce_per_sample
from imaseg.utils.checks import check_choice, check_probability

__all__ = [
    "ADVERSARIAL_LOSSES",
    "AdversarialLoss",
    "DiceCELoss",
    "VoxelWeightedLoss",
    "adversarial_loss_names",
    "build_adversarial_loss",
    "register_adversarial_loss",
]

ADVERSARIAL_LOSSES: dict[str, type[AdversarialLoss]] = {}


class AdversarialLoss(nn.Module):
    """Per-sample loss ``(B,)`` of the adversarial logits; ``needs_flips``: it reads the attack's flip record."""

    needs_flips: bool = False

    def forward(
        self,
        adv_logits: torch.Tensor,
        label: torch.Tensor,
        *,
        clean_prediction: torch.Tensor | None = None,
        flip_radius: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


def register_adversarial_loss(name: str) -> Callable[[type[AdversarialLoss]], type[AdversarialLoss]]:
    """Class decorator adding an :class:`AdversarialLoss` under ``name``."""

    def decorate(cls: type[AdversarialLoss]) -> type[AdversarialLoss]:
        if name in ADVERSARIAL_LOSSES and ADVERSARIAL_LOSSES[name] is not cls:
            raise ValueError(f"adversarial loss {name!r} is registered twice")
        ADVERSARIAL_LOSSES[name] = cls
        return cls

    return decorate


def adversarial_loss_names() -> tuple[str, ...]:
    return tuple(ADVERSARIAL_LOSSES)


def build_adversarial_loss(name: str, *, robust_weight: float = 0.1) -> AdversarialLoss:
    """The loss registered as ``name`` (``robust_weight`` is used by ``voxel-weighted`` only)."""
    cls = ADVERSARIAL_LOSSES[check_choice("adversarial loss", name, adversarial_loss_names())]
    return VoxelWeightedLoss(robust_weight) if cls is VoxelWeightedLoss else cls()


@register_adversarial_loss("dice-ce")
class DiceCELoss(AdversarialLoss):
    """Per-sample soft Dice (foreground) + voxel-mean cross entropy."""

    def forward(self, adv_logits, label, *, clean_prediction=None, flip_radius=None) -> torch.Tensor:
        return dice_ce_per_sample(adv_logits, label)


@register_adversarial_loss("voxel-weighted")
class VoxelWeightedLoss(AdversarialLoss):
    """Cross entropy weighted 1 on vulnerable voxels and ``robust_weight`` elsewhere, + per-sample soft Dice.

    Args:
        robust_weight: weight of voxels that are right on the clean input and never flipped along the path.

    Raises:
        ValueError: ``robust_weight`` outside [0, 1].
    """

    needs_flips = True

    def __init__(self, robust_weight: float = 0.1) -> None:
        super().__init__()
        self.robust_weight = check_probability("robust_weight", robust_weight)

    @staticmethod
    def vulnerable(label: torch.Tensor, clean_prediction: torch.Tensor, flip_radius: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial)``: wrong on the clean input, or flipped along the path (a finite flip radius)."""
        return (clean_prediction != label) | torch.isfinite(flip_radius)

    def forward(self, adv_logits, label, *, clean_prediction=None, flip_radius=None) -> torch.Tensor:
        if clean_prediction is None or flip_radius is None:
            raise ValueError("the voxel-weighted loss needs `clean_prediction` and `flip_radius` (record flips)")
        if clean_prediction.shape != label.shape or flip_radius.shape != label.shape:
            raise ValueError(
                f"`clean_prediction` {tuple(clean_prediction.shape)} and `flip_radius` {tuple(flip_radius.shape)} "
                f"must have the label's shape {tuple(label.shape)}"
            )
        weight = torch.where(self.vulnerable(label, clean_prediction, flip_radius), 1.0, self.robust_weight)
        return weighted_ce_per_sample(adv_logits, label, weight) + soft_dice_per_sample(adv_logits, label)
