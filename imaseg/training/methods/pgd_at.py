"""PGD adversarial training (Madry et al. 2018) at a fixed budget."""

from __future__ import annotations

from imaseg.attacks import PGD
from imaseg.functional import dice_ce_per_sample
from imaseg.training.methods.registry import Method, register_method
from imaseg.utils.checks import check_probability

__all__ = ["PGDAT"]


@register_method("pgd-at")
class PGDAT(Method):
    """Fixed-radius PGD adversarial training: ``(1 - w) * clean + w * adversarial`` (``w = 1``: adversarial only)."""

    order = 10

    adversarial = True
    citation = "PGD adversarial training: Madry et al., ICLR 2018"

    def __init__(self, config, joint_forward, sample_ids, num_classes) -> None:
        super().__init__(config, joint_forward, sample_ids, num_classes)
        self.weight = check_probability("adv_weight", config.adv_weight)

    @classmethod
    def label(cls, config) -> str:
        return f"PGD-AT (eps {config.eps})"

    @classmethod
    def settings_text(cls, config) -> str:
        return f"eps {config.eps} {config.norm}, {config.attack_steps} steps"

    def loss(self, model, network, images, labels, index, generator):
        c = self.config
        attack = PGD(
            network,
            eps=c.eps,
            norm=c.norm,
            steps=c.attack_steps,
            alpha_factor=c.attack_alpha_factor,
            loss="dice-ce",
            select="last",
            clip_range=self.clip_range,
            generator=generator,
            autocast_dtype=self.autocast,
        )
        adversarial = attack(images, labels)
        if self.weight >= 1.0:
            adv = dice_ce_per_sample(model(adversarial).float(), labels)
            return adv.mean(), {"loss_adv": adv.detach().mean().item()}
        clean_logits, adv_logits = self.forward_pair(model, images, adversarial)
        clean, adv = dice_ce_per_sample(clean_logits, labels), dice_ce_per_sample(adv_logits, labels)
        loss = (1 - self.weight) * clean.mean() + self.weight * adv.mean()
        return loss, {"loss_clean": clean.detach().mean().item(), "loss_adv": adv.detach().mean().item()}
