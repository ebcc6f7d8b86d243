"""TRADES (Zhang et al., ICML 2019): clean loss plus a KL term towards the model's own clean prediction."""

from __future__ import annotations

from imaseg.attacks import TradesAttack
from imaseg.functional import dice_ce_per_sample, kl_per_sample
from imaseg.training.methods.registry import Method, register_method

__all__ = ["Trades"]


@register_method("trades")
class Trades(Method):
    """TRADES: ``clean loss + beta * KL(f(x) || f(x'))`` with ``x'`` maximising the KL in the ball."""

    order = 20

    adversarial = True
    citation = "TRADES: Zhang et al., ICML 2019"

    @classmethod
    def label(cls, config) -> str:
        return f"TRADES (eps {config.eps})"

    @classmethod
    def settings_text(cls, config) -> str:
        return f"eps {config.eps}, beta {config.trades_beta}"

    def loss(self, model, network, images, labels, index, generator):
        c = self.config
        attack = TradesAttack(
            network,
            eps=c.eps,
            norm=c.norm,
            steps=c.attack_steps,
            alpha_factor=c.attack_alpha_factor,
            clip_range=self.clip_range,
            generator=generator,
            autocast_dtype=self.autocast,
        )
        adversarial = attack(images, labels)
        clean_logits, adv_logits = self.forward_pair(model, images, adversarial)
        clean = dice_ce_per_sample(clean_logits, labels)
        kl = kl_per_sample(adv_logits, clean_logits.softmax(1))
        loss = clean.mean() + c.trades_beta * kl.mean()
        return loss, {"loss_clean": clean.detach().mean().item(), "loss_kl": kl.detach().mean().item()}
