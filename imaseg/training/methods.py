"""Training methods: the loss of one batch for standard, PGD-AT, TRADES and IMA training.

Every method gets the same model, optimiser, schedule, precision and batches from the trainer, so
comparisons between them are fair. Inner attacks run on the bare network (frozen, eval mode); the
loss forward runs on ``model`` (a DDP wrapper under torchrun), clean and adversarial halves in one
forward pass where the network has no batch norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from imaseg.attacks import PGD, TradesAttack
from imaseg.attacks.trades import kl_per_sample
from imaseg.losses import IMALoss, dice_ce_per_sample
from imaseg.training.config import TrainConfig
from imaseg.utils.checks import check_choice, check_probability

__all__ = ["IMAMethod", "Method", "PGDAT", "Standard", "Trades", "build_method", "has_batch_norm"]


def has_batch_norm(network: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())


def _clip(config: TrainConfig):
    if config.clip_range is None:
        return None
    if len(config.clip_range) != 2:
        raise ValueError(f"`clip_range` must be 'lo,hi', got {config.clip_range}")
    return tuple(config.clip_range)


class Method(nn.Module):
    """Base: ``loss(model, network, images, labels, index, generator) -> (loss, logs)``; buffers of a
    method (IMA's margins) are part of its ``state_dict`` and so of every checkpoint."""

    name = ""

    def __init__(self, config: TrainConfig, joint_forward: bool) -> None:
        super().__init__()
        self.config = config
        self.joint_forward = joint_forward
        self.autocast = torch.bfloat16 if config.amp else None

    def forward_pair(self, model, clean: torch.Tensor, adversarial: torch.Tensor):
        if self.joint_forward:
            return model(torch.cat([clean, adversarial])).float().chunk(2)
        return model(clean).float(), model(adversarial).float()

    def end_epoch(self) -> dict[str, float]:
        return {}


class Standard(Method):
    name = "std"

    def loss(self, model, network, images, labels, index, generator):
        loss = dice_ce_per_sample(model(images).float(), labels).mean()
        return loss, {}


class PGDAT(Method):
    """Fixed-radius PGD adversarial training: ``(1 - w) * clean + w * adversarial`` (``w = 1``: adversarial only)."""

    name = "pgd-at"

    def __init__(self, config: TrainConfig, joint_forward: bool) -> None:
        super().__init__(config, joint_forward)
        self.weight = check_probability("adv_weight", config.adv_weight)

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
            clip_range=_clip(c),
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


class Trades(Method):
    """TRADES: ``clean loss + beta * KL(f(x) || f(x'))`` with ``x'`` maximising the KL in the ball."""

    name = "trades"

    def loss(self, model, network, images, labels, index, generator):
        c = self.config
        attack = TradesAttack(
            network,
            eps=c.eps,
            norm=c.norm,
            steps=c.attack_steps,
            alpha_factor=c.attack_alpha_factor,
            clip_range=_clip(c),
            generator=generator,
            autocast_dtype=self.autocast,
        )
        adversarial = attack(images, labels)
        clean_logits, adv_logits = self.forward_pair(model, images, adversarial)
        clean = dice_ce_per_sample(clean_logits, labels)
        kl = kl_per_sample(adv_logits, clean_logits.softmax(1))
        loss = clean.mean() + c.trades_beta * kl.mean()
        return loss, {"loss_clean": clean.detach().mean().item(), "loss_kl": kl.detach().mean().item()}


class IMAMethod(Method):
    """IMA (see :mod:`imaseg.losses.ima`); the margins are buffers of ``self.ima.bank``."""

    name = "ima"

    def __init__(self, config: TrainConfig, joint_forward: bool, sample_ids: Sequence[str], num_classes: int) -> None:
        super().__init__(config, joint_forward)
        c = config
        self.ima = IMALoss(
            sample_ids,
            margin=c.ima_margin,
            delta=c.ima_delta,
            eps_max=c.ima_eps_max,
            beta=c.ima_beta,
            tau=c.ima_tau,
            dice_reduction=c.ima_dice_reduction,
            steps=c.ima_steps,
            alpha_factor=c.ima_alpha_factor,
            bisection_steps=c.ima_bisection_steps,
            empty_tolerance=c.ima_empty_tolerance,
            robust_weight=c.ima_robust_weight,
            voxel_start=c.ima_voxel_start,
            voxel_alpha_factor=c.ima_voxel_alpha_factor,
            clip_range=_clip(c),
            num_classes=num_classes,
            autocast_dtype=self.autocast,
        )

    def loss(self, model, network, images, labels, index, generator):
        return self.ima(
            model, images, labels, index, generator=generator, network=network, joint_forward=self.joint_forward
        )

    def end_epoch(self) -> dict[str, float]:
        return self.ima.bank.end_epoch()


def build_method(config: TrainConfig, network: nn.Module, sample_ids: Sequence[str], num_classes: int) -> Method:
    """The method named by ``config.method``."""
    name = check_choice("method", config.method, ("std", "pgd-at", "trades", "ima"))
    joint = not has_batch_norm(network)
    if name == "std":
        return Standard(config, joint)
    if name == "pgd-at":
        return PGDAT(config, joint)
    if name == "trades":
        return Trades(config, joint)
    return IMAMethod(config, joint, sample_ids, num_classes)
