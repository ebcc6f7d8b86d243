"""What the fixed-budget adversarial methods (PGD-AT, TRADES) share: their inner attack's arguments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from imaseg.attacks import Attack, AttackSettings, create_attack
from imaseg.attacks.registry import attack_spec
from imaseg.training.methods.registry import Method

__all__ = ["AdversarialMethod", "ramp_text", "threat_text"]


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

    def physical_attack(self, network: torch.nn.Module, generator: torch.Generator) -> Attack:
        """The inner attack of a physical threat (``adversarial.threat`` other than ``pgd``): the registered kind
        at this epoch's budget in its own unit, with the section's steps, the run's clip range and precision."""
        adversarial = self.config.adversarial
        spec = attack_spec(adversarial.threat)
        settings = AttackSettings(steps=adversarial.steps, clip_range=self.clip_range, autocast_dtype=self.autocast)
        attack = create_attack(
            f"{spec.kind}-{spec.norms[0]}", network, eps=adversarial.budget(self.epoch), settings=settings
        )
        attack.generator = generator
        return attack


def threat_text(config: Any) -> str:
    """``"eps 1.0 l2"`` for PGD, ``"bias-field, eps 0.2 rel"`` for a physical threat (labels and settings texts)."""
    adversarial = config.adversarial
    if adversarial.threat == "pgd":
        return f"eps {adversarial.eps} {adversarial.norm}"
    return f"{adversarial.threat}, eps {adversarial.eps} {attack_spec(adversarial.threat).norms[0]}"


def ramp_text(config: Any) -> str:
    """``"ramp 1/epoch"`` for a budget ramp, with the budget it reaches where training ends before ``eps``
    (``", reaches eps 0.5 in 2 epochs"``); ``""`` without a ramp (labels of PGD-AT and TRADES)."""
    adversarial = config.adversarial
    if adversarial.ramp <= 0:
        return ""
    reached = adversarial.budget(config.epochs - 1)
    epochs = f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"
    cut = f", reaches eps {reached:g} in {epochs}" if f"{reached:g}" != f"{adversarial.eps:g}" else ""
    return f"ramp {adversarial.ramp:g}/epoch{cut}"
