"""PGD adversarial training (Madry et al. 2018) at a fixed budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from imaseg.attacks import PGD, Attack
from imaseg.functional import dice_ce_per_sample
from imaseg.losses.adversarial import build_adversarial_loss
from imaseg.metrics.prediction import predict_classes
from imaseg.training.methods.adversarial import AdversarialMethod, ramp_text, threat_text
from imaseg.training.methods.registry import LossLogs, register_method
from imaseg.utils.checks import check_probability

if TYPE_CHECKING:
    from imaseg.training.config import TrainConfig

__all__ = ["PGDAT"]


@register_method("pgd-at")
class PGDAT(AdversarialMethod):
    """Fixed-radius PGD adversarial training: ``(1 - w) * clean + w * adversarial`` (``w = 1``: adversarial only)."""

    order = 10

    citation = "PGD adversarial training: Madry et al., ICLR 2018"

    def __init__(self, config: TrainConfig, joint_forward: bool, sample_ids: Sequence[str], num_classes: int) -> None:
        super().__init__(config, joint_forward, sample_ids, num_classes)
        self.weight = check_probability("adv_weight", config.adversarial.weight)
        self.adv_loss = build_adversarial_loss(config.adversarial.loss, robust_weight=config.adversarial.robust_weight)
        if self.adv_loss.needs_flips and config.adversarial.threat != "pgd":
            raise ValueError(
                f"`adversarial.loss` {config.adversarial.loss} needs the flip record of a PGD path; threat "
                f"{config.adversarial.threat} has none: use loss dice-ce, or threat pgd"
            )

    @classmethod
    def label(cls, config: TrainConfig) -> str:
        adversarial = config.adversarial
        extras = [ramp_text(config)] if adversarial.ramp > 0 else []
        if adversarial.loss != "dice-ce":
            extras.append(f"{adversarial.loss} loss")
        threat = "" if adversarial.threat == "pgd" else f"{adversarial.threat}, "
        return f"PGD-AT ({threat}eps {adversarial.eps}{''.join(', ' + e for e in extras)})"

    @classmethod
    def settings_text(cls, config: TrainConfig) -> str:
        adversarial = config.adversarial
        text = f"{threat_text(config)}, {adversarial.steps} steps"
        if adversarial.ramp > 0:
            text += f", eps ramp {adversarial.ramp:g} per epoch"
        if adversarial.loss != "dice-ce":
            text += f", {adversarial.loss} adversarial loss (robust weight {adversarial.robust_weight:g})"
        return text

    def loss(
        self,
        model: nn.Module,
        network: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, LossLogs]:
        needs_flips = self.adv_loss.needs_flips
        attack: Attack
        if self.config.adversarial.threat == "pgd":
            attack = PGD(
                network, loss="dice-ce", select="last", record_flips=needs_flips, **self.attack_arguments(generator)
            )
        else:
            attack = self.physical_attack(network, generator)
        result = attack.run(images, labels)
        adversarial = result.adversarial
        if self.weight >= 1.0:
            clean_pred = None
            if needs_flips:
                with torch.no_grad():
                    clean_pred = predict_classes(model(images).float())
            adv = self.adv_loss(
                model(adversarial).float(), labels, clean_prediction=clean_pred, flip_radius=result.flip_radius
            )
            return adv.mean(), {"loss_adv": adv.detach().mean()}
        clean_logits, adv_logits = self.forward_pair(model, images, adversarial)
        clean = dice_ce_per_sample(clean_logits, labels)
        clean_pred = predict_classes(clean_logits.detach()) if needs_flips else None
        adv = self.adv_loss(adv_logits, labels, clean_prediction=clean_pred, flip_radius=result.flip_radius)
        loss = (1 - self.weight) * clean.mean() + self.weight * adv.mean()
        return loss, {"loss_clean": clean.detach().mean(), "loss_adv": adv.detach().mean()}
