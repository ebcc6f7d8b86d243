"""What the fixed-budget adversarial methods (PGD-AT, TRADES) share: their inner attack's arguments."""

from __future__ import annotations

from typing import Any

import torch

from imaseg.training.methods.registry import Method

__all__ = ["AdversarialMethod"]


class AdversarialMethod(Method):
    """Base of the methods that attack at the config's ``adversarial`` budget: the inner attack's
    arguments come from that one section, the run's clip range and precision, and the batch's generator."""

    adversarial = True

    def attack_arguments(self, generator: torch.Generator) -> dict[str, Any]:
        """``eps``, ``norm``, ``steps``, ``alpha_factor``, ``clip_range``, ``generator``, ``autocast_dtype``."""
        return {
            **self.config.adversarial.attack_arguments(),
            "clip_range": self.clip_range,
            "generator": generator,
            "autocast_dtype": self.autocast,
        }
