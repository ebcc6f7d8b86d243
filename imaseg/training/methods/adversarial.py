"""What the fixed-budget adversarial methods (PGD-AT, TRADES) share: their inner attack's arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imaseg.training.methods.registry import Method

__all__ = ["AdversarialMethod"]


class AdversarialMethod(Method):
    """Base of the methods that attack at the config's ``adversarial`` budget: the inner attack's
    arguments come from that one section, the run's clip range and precision, and the batch's generator."""

    adversarial = True
    epoch: int = 0  # the epoch being trained (0-based), for a budget ramp; set by resume / end_epoch

    def resume(self, run: Path, epoch: int) -> None:
        self.epoch = epoch

    def end_epoch(self) -> dict[str, float]:
        self.epoch += 1
        return {}

    def attack_arguments(self, generator: torch.Generator) -> dict[str, Any]:
        """``eps`` (this epoch's), ``norm``, ``steps``, ``alpha_factor``, ``clip_range``, ``generator``,
        ``autocast_dtype``."""
        return {
            **self.config.adversarial.attack_arguments(self.epoch),
            "clip_range": self.clip_range,
            "generator": generator,
            "autocast_dtype": self.autocast,
        }
