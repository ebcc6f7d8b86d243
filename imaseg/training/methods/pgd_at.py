"""PGD adversarial training (Madry et al. 2018) at a fixed budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from imaseg.attacks import PGD
from imaseg.functional import dice_ce_per_sample
from imaseg.training.methods.adversarial import AdversarialMethod
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

    @classmethod
    def label(cls, config: TrainConfig) -> str:
        return f"PGD-AT (eps {config.adversarial.eps})"

    @classmethod
    def settings_text(cls, config: TrainConfig) -> str:
        adversarial = config.adversarial
        return f"eps {adversarial.eps} {adversarial.norm}, {adversarial.steps} steps"

    def loss(
        self,
        model: nn.Module,
        network: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, LossLogs]:
        attack = PGD(network, loss="dice-ce", select="last", **self.attack_arguments(generator))
        adversarial = attack(images, labels)
        if self.weight >= 1.0:
            adv = dice_ce_per_sample(model(adversarial).float(), labels)
            return adv.mean(), {"loss_adv": adv.detach().mean()}
        clean_logits, adv_logits = self.forward_pair(model, images, adversarial)
        clean, adv = dice_ce_per_sample(clean_logits, labels), dice_ce_per_sample(adv_logits, labels)
        loss = (1 - self.weight) * clean.mean() + self.weight * adv.mean()
        return loss, {"loss_clean": clean.detach().mean(), "loss_adv": adv.detach().mean()}
