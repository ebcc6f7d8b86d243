"""The attack-loss interface and its registry.

An attack loss turns logits ``(B, C, *spatial)`` and integer targets ``(B, *spatial)`` into one value
per sample, ``(B,)``. Untargeted attacks ascend it; targeted attacks descend it towards the target.
Per-sample values (not a batch mean) keep each sample's gradient independent of the others.

Adding a loss is one file: subclass :class:`AttackLoss` and decorate it with
``@register_attack_loss("name")`` in a new module of ``imaseg/attacks/losses/``; every module of that
package is imported on first use of the registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn

from imaseg.utils.plugins import import_submodules

__all__ = ["ATTACK_LOSSES", "AttackLoss", "build_attack_loss", "register_attack_loss"]

ATTACK_LOSSES: dict[str, type[AttackLoss]] = {}


def register_attack_loss(name: str) -> Callable[[type[AttackLoss]], type[AttackLoss]]:
    """Class decorator adding an :class:`AttackLoss` to :data:`ATTACK_LOSSES` under ``name``."""

    def decorate(cls: type[AttackLoss]) -> type[AttackLoss]:
        if name in ATTACK_LOSSES and ATTACK_LOSSES[name] is not cls:
            warnings.warn(f"attack loss {name!r} re-registered by {cls.__name__}", stacklevel=2)
        ATTACK_LOSSES[name] = cls
        cls.name = name
        return cls

    return decorate


class AttackLoss(nn.Module):
    """Base class: validates shapes, then defers to :meth:`per_sample`."""

    name = ""

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, *, step: int = 0, steps: int = 1, targeted: bool = False
    ) -> torch.Tensor:
        """Return the per-sample loss ``(B,)``.

        Args:
            logits: ``(B, C, *spatial)`` raw network outputs.
            target: ``(B, *spatial)`` class indices (the ground truth, or the target when targeted).
            step: index of the current attack step (for schedules such as SegPGD's).
            steps: total number of attack steps.
            targeted: whether the attack descends this loss towards ``target``.
        """
        if logits.dim() < 3:
            raise ValueError(f"logits must be (B, C, *spatial), got shape {tuple(logits.shape)}")
        if target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)} "
                "(expected (B, *spatial) class indices)"
            )
        return self.per_sample(logits.float(), target.long(), step=step, steps=steps, targeted=targeted)

    def per_sample(self, logits, target, *, step: int, steps: int, targeted: bool) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def spatial_mean(values: torch.Tensor) -> torch.Tensor:
        """Mean over every axis but the first: ``(B, *spatial) -> (B,)``."""
        return values.flatten(1).mean(1)


def build_attack_loss(loss: str | AttackLoss) -> AttackLoss:
    """An :class:`AttackLoss` from its registered name (or pass one through)."""
    if isinstance(loss, AttackLoss):
        return loss
    import_submodules("imaseg.attacks.losses")
    if not isinstance(loss, str) or loss.lower() not in ATTACK_LOSSES:
        raise ValueError(f"unknown attack loss {loss!r}; choose one of {', '.join(sorted(ATTACK_LOSSES))}")
    return ATTACK_LOSSES[loss.lower()]()
