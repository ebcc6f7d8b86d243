"""TRADES (Zhang et al., ICML 2019): clean loss plus a KL term towards the model's own clean prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from imaseg.attacks import TradesAttack
from imaseg.functional import dice_ce_per_sample, kl_per_sample
from imaseg.training.methods.adversarial import AdversarialMethod
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
        return f"TRADES (eps {config.adversarial.eps})"

    @classmethod
    def settings_text(cls, config: TrainConfig) -> str:
        return f"eps {config.adversarial.eps}, beta {config.adversarial.trades_beta}"

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
