"""TRADES (Zhang et al., ICML 2019): clean loss plus a KL term towards the model's own clean prediction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from imaseg.attacks import TradesAttack
from imaseg.functional import dice_ce_per_sample, kl_per_sample
from imaseg.training.methods.adversarial import AdversarialMethod, ramp_text
from imaseg.training.methods.registry import LossLogs, register_method

if TYPE_CHECKING:
    from imaseg.training.config import TrainConfig

__all__ = ["Trades"]


@register_method("trades")
class Trades(AdversarialMethod):
    """TRADES: ``clean loss + beta * KL(f(x) || f(x'))`` with ``x'`` maximising the KL in the ball."""

    order = 20

    citation = "TRADES: Zhang et al., ICML 2019"

    @classmethod
    def label(cls, config: TrainConfig) -> str:
        ramp = ramp_text(config)
        return f"TRADES (eps {config.adversarial.eps}{', ' + ramp if ramp else ''})"

    @classmethod
    def settings_text(cls, config: TrainConfig) -> str:
        return f"eps {config.adversarial.eps}, beta {config.adversarial.trades_beta}"

    def __init__(self, config: TrainConfig, joint_forward: bool, sample_ids: Sequence[str], num_classes: int) -> None:
        super().__init__(config, joint_forward, sample_ids, num_classes)
        if config.adversarial.threat != "pgd":
            raise ValueError(
                f"`adversarial.threat` {config.adversarial.threat} is not supported by trades (its inner attack "
                "maximises the KL divergence in an L2 / Linf ball); use method pgd-at, or threat pgd"
            )

    def loss(
        self,
        model: nn.Module,
        network: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, LossLogs]:
        attack = TradesAttack(network, **self.attack_arguments(generator))
        adversarial = attack(images, labels)
        clean_logits, adv_logits = self.forward_pair(model, images, adversarial)
        clean = dice_ce_per_sample(clean_logits, labels)
        kl = kl_per_sample(adv_logits, clean_logits.softmax(1))
        loss = clean.mean() + self.config.adversarial.trades_beta * kl.mean()
        return loss, {"loss_clean": clean.detach().mean(), "loss_kl": kl.detach().mean()}
