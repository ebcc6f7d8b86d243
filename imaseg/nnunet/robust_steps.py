"""What a robust nnU-Net trainer does with one batch, written without nnU-Net so it can be tested alone.

nnU-Net trains with deep supervision: the network returns one output per decoder scale and the loss
(:class:`nnunetv2.training.loss.deep_supervision.DeepSupervisionWrapper` around Dice + CE) takes the list of
outputs and the list of down-sampled targets. A :class:`RobustStep` keeps that loss for every term it can:

- the inner attack runs on the full-resolution output only (:class:`TopOutput`), with imaseg's attacks
  (:class:`~imaseg.attacks.PGD`, :class:`~imaseg.attacks.TradesAttack`, IMA's
  :class:`~imaseg.attacks.MarginSearch` through :class:`~imaseg.losses.IMALoss`), in nnU-Net's normalised
  input units and without clamping (nnU-Net's inputs have no fixed valid range);
- the clean term, PGD-AT's adversarial term and IMA sample mode's adversarial term are nnU-Net's own deep
  supervision loss; TRADES' KL term and the voxel-weighted term (PGD-AT ``loss voxel-weighted`` and IMA
  voxel mode) use the full-resolution output only, since the flip record exists at that resolution only;
- IMA's margins are kept per nnU-Net case identifier (every slice of a 2D configuration shares its case's
  margin) in :class:`~imaseg.losses.MarginBank` buffers, so the trainer's checkpoints carry them.

Steps are registered by imaseg's method names (:data:`ROBUST_STEPS`): ``std``, ``pgd-at``, ``trades``, ``ima``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

import torch
from torch import nn

from imaseg.attacks import PGD, TradesAttack
from imaseg.config import config_from_dict, merge_mappings, section, setting
from imaseg.functional import as_class_labels, kl_per_sample
from imaseg.losses import IMALoss
from imaseg.losses.adversarial import build_adversarial_loss
from imaseg.losses.ima_config import IMAConfig
from imaseg.metrics.prediction import predict_classes
from imaseg.training.config import AdversarialConfig
from imaseg.utils.checks import check_choice, check_probability

__all__ = [
    "NNUNET_DEFAULTS",
    "ROBUST_STEPS",
    "DeepSupervisionLoss",
    "RobustSettings",
    "RobustStep",
    "TopOutput",
    "build_robust_step",
    "robust_step_names",
    "top_output",
]

Outputs: TypeAlias = torch.Tensor | Sequence[torch.Tensor]
DeepSupervisionLoss: TypeAlias = Callable[[Any, Any], torch.Tensor]
"""nnU-Net's ``self.loss(outputs, targets)``: a scalar over the batch (lists with deep supervision)."""

ROBUST_STEPS: dict[str, type[RobustStep]] = {}

NNUNET_DEFAULTS: dict[str, Any] = {"ima": {"survival_share": 0.5}}
"""Where nnU-Net's training differs from imaseg's: it draws a case many times per epoch, so a margin grows only
when more than half of its visits survived (the published rule's "any visit" would grow almost every margin)."""


def top_output(output: Outputs) -> torch.Tensor:
    """The full-resolution output of a deep-supervised network (the output itself without deep supervision).

    >>> top_output([torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]).shape
    torch.Size([1, 2, 4, 4])
    """
    return output if isinstance(output, torch.Tensor) else output[0]


def _halves(output: Outputs) -> tuple[Outputs, Outputs]:
    """A joint forward's outputs split into the first and the second half of the batch, scale by scale."""
    if isinstance(output, torch.Tensor):
        first, second = output.chunk(2)
        return first, second
    pairs = [o.chunk(2) for o in output]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class TopOutput(nn.Module):
    """``network`` seen by an attack: float logits of the full-resolution output only."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return top_output(self.network(x)).float()


class _StepNames:
    """The registered steps' names, read when ``--help`` is built (a lazy ``choices`` container)."""

    def __iter__(self):
        return iter(robust_step_names())

    def __contains__(self, name: object) -> bool:
        return name in robust_step_names()


@dataclass(frozen=True)
class RobustSettings:
    """What a robust nnU-Net trainer trains with: imaseg's method name and its sections.

    ``adversarial`` (PGD-AT, TRADES) and ``ima`` are imaseg's own configuration sections; budgets are in
    nnU-Net's normalised input units (z-scores for MR, the plans' CT normalisation for CT).

    >>> RobustSettings.from_mapping({"method": "pgd-at", "adversarial": {"eps": 2.0}}).adversarial.eps
    2.0
    """

    method: str = setting("pgd-at", "training method: std, pgd-at, trades or ima", choices=_StepNames())
    seed: int = setting(0, "seed of the inner attacks' random starts")
    adversarial: AdversarialConfig = section(
        AdversarialConfig, "pgd-at / trades: the inner attack (nnU-Net input units)"
    )
    ima: IMAConfig = section(IMAConfig, "ima: margins (nnU-Net input units), one per case")

    def __post_init__(self) -> None:
        check_choice("method", self.method, robust_step_names())
        for name, threat in (("adversarial", self.adversarial.threat), ("ima", self.ima.threat)):
            if threat == "pgd":
                continue
            raise ValueError(
                f"`{name}.threat` {threat} is not available in nnU-Net trainers (physical threats "
                "need intensities in [0, 1] and the voxel spacing); use threat pgd"
            )

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None = None) -> RobustSettings:
        """Settings from plain values (``{"method": ..., "adversarial": {...}, "ima": {...}}``) over
        :data:`NNUNET_DEFAULTS`; unknown keys raise.

        >>> RobustSettings.from_mapping({"method": "ima"}).ima.survival_share
        0.5
        """
        merged = merge_mappings(NNUNET_DEFAULTS, dict(values or {}))
        return config_from_dict(cls, merged, source="nnU-Net robust training")

    def describe(self) -> str:
        """The method and its own settings in a few words (logs and the results folder's settings file)."""
        if self.method == "ima":
            ima = self.ima
            return f"IMA {ima.margin} mode, delta {ima.delta}, eps_max {ima.eps_max}, {ima.steps} steps"
        if self.method in ("pgd-at", "trades"):
            adversarial = self.adversarial
            return f"{self.method} {adversarial.norm} eps {adversarial.eps}, {adversarial.steps} steps"
        return self.method


class RobustStep(nn.Module):
    """One method's training loss on an nnU-Net batch; its buffers (IMA's margins) go into checkpoints.

    Args:
        settings: the method and its sections.
        case_ids: nnU-Net's identifiers of the training cases (the ``keys`` of its batches).
        num_classes: segmentation heads, background included.
    """

    name: ClassVar[str] = ""
    adversarial: ClassVar[bool] = True

    def __init__(self, settings: RobustSettings, case_ids: Sequence[str], num_classes: int) -> None:
        super().__init__()
        self.settings = settings
        self.case_ids = list(case_ids)
        self.positions = {case: i for i, case in enumerate(self.case_ids)}
        self.precision: Callable[[], AbstractContextManager] = nullcontext
        """The training forward's precision (the trainer's CUDA autocast); the inner attacks run in float32 outside
        it, since their input gradients of voxel-averaged losses underflow in float16 without loss scaling."""

    def training_forward(self, network: nn.Module, data: torch.Tensor) -> Outputs:
        """The network's training forward under :attr:`precision`."""
        with self.precision():
            return network(data)

    def forward_pair(
        self, network: nn.Module, clean: torch.Tensor, adversarial: torch.Tensor
    ) -> tuple[Outputs, Outputs]:
        """Outputs of the clean and the adversarial batch, one forward (nnU-Net's instance norm allows it)."""
        return _halves(self.training_forward(network, torch.cat([clean, adversarial])))

    def index(self, keys: Sequence[str]) -> torch.Tensor:
        """Positions of a batch's case identifiers among the training cases."""
        missing = [k for k in keys if k not in self.positions]
        if missing:
            raise KeyError(
                f"cases {missing} are not training cases of this fold; the split changed since training began"
            )
        return torch.tensor([self.positions[k] for k in keys], dtype=torch.long)

    def loss(
        self,
        network: nn.Module,
        data: torch.Tensor,
        target: Outputs,
        keys: Sequence[str],
        epoch: int,
        generator: torch.Generator,
        ds_loss: DeepSupervisionLoss,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's training loss and what to log (plain numbers)."""
        raise NotImplementedError

    def end_epoch(self) -> dict[str, float]:
        """After an epoch's last batch: statistics to log (IMA: the margin update)."""
        return {}

    def margins(self) -> list[float]:
        """Every training case's margin, in :attr:`case_ids` order (empty without margins)."""
        return []


def register_robust_step(name: str) -> Callable[[type[RobustStep]], type[RobustStep]]:
    def decorate(cls: type[RobustStep]) -> type[RobustStep]:
        cls.name = name
        ROBUST_STEPS[name] = cls
        return cls

    return decorate


def robust_step_names() -> tuple[str, ...]:
    return tuple(ROBUST_STEPS)


def build_robust_step(settings: RobustSettings, case_ids: Sequence[str], num_classes: int) -> RobustStep:
    """The registered step of ``settings.method``."""
    return ROBUST_STEPS[settings.method](settings, case_ids, num_classes)


def _labels(target: Outputs, data: torch.Tensor) -> torch.Tensor:
    return as_class_labels(top_output(target), data)


@register_robust_step("std")
class StandardStep(RobustStep):
    """nnU-Net's own loss on the clean batch (the baseline, trained through the same trainer)."""

    adversarial = False

    def loss(self, network, data, target, keys, epoch, generator, ds_loss):
        loss = ds_loss(self.training_forward(network, data), target)
        return loss, {"loss_clean": float(loss.detach())}


@register_robust_step("pgd-at")
class PGDATStep(RobustStep):
    """PGD-AT: ``(1 - w) * clean + w * adversarial``, both nnU-Net's deep supervision loss (or the
    voxel-weighted term at full resolution with ``adversarial.loss voxel-weighted``)."""

    def __init__(self, settings: RobustSettings, case_ids: Sequence[str], num_classes: int) -> None:
        super().__init__(settings, case_ids, num_classes)
        self.weight = check_probability("adversarial.weight", settings.adversarial.weight)
        section = settings.adversarial
        self.adv_loss = (
            None
            if section.loss == "dice-ce"
            else build_adversarial_loss(section.loss, robust_weight=section.robust_weight)
        )

    def loss(self, network, data, target, keys, epoch, generator, ds_loss):
        labels = _labels(target, data)
        record = self.adv_loss is not None and self.adv_loss.needs_flips
        arguments = self.settings.adversarial.attack_arguments(epoch)
        attack = PGD(
            TopOutput(network), loss="dice-ce", select="last", record_flips=record, generator=generator, **arguments
        )
        result = attack.run(data, labels)
        clean_out, adv_out = self.forward_pair(network, data, result.adversarial)
        clean = ds_loss(clean_out, target)
        if self.adv_loss is None:
            adv = ds_loss(adv_out, target)
        else:
            clean_pred = predict_classes(top_output(clean_out).detach().float())
            adv = self.adv_loss(
                top_output(adv_out).float(), labels, clean_prediction=clean_pred, flip_radius=result.flip_radius
            ).mean()
        loss = (1 - self.weight) * clean + self.weight * adv
        return loss, {"loss_clean": float(clean.detach()), "loss_adv": float(adv.detach()), "eps": arguments["eps"]}


@register_robust_step("trades")
class TradesStep(RobustStep):
    """TRADES: nnU-Net's loss on the clean batch + ``beta * KL(f(x) || f(x'))`` at full resolution."""

    def loss(self, network, data, target, keys, epoch, generator, ds_loss):
        arguments = self.settings.adversarial.attack_arguments(epoch)
        adversarial = TradesAttack(TopOutput(network), generator=generator, **arguments)(data, _labels(target, data))
        clean_out, adv_out = self.forward_pair(network, data, adversarial)
        clean = ds_loss(clean_out, target)
        clean_probs = top_output(clean_out).float().softmax(1)
        kl = kl_per_sample(top_output(adv_out).float(), clean_probs).mean()
        loss = clean + self.settings.adversarial.trades_beta * kl
        return loss, {"loss_clean": float(clean.detach()), "loss_kl": float(kl.detach())}


@register_robust_step("ima")
class IMAStep(RobustStep):
    """IMA (sample or voxel mode) with one margin per nnU-Net case; ``self.ima.bank`` holds the margins."""

    def __init__(self, settings: RobustSettings, case_ids: Sequence[str], num_classes: int) -> None:
        super().__init__(settings, case_ids, num_classes)
        self.ima = IMALoss(self.case_ids, settings.ima, clip_range=None, num_classes=num_classes)

    def loss(self, network, data, target, keys, epoch, generator, ds_loss):
        labels = _labels(target, data)
        index = self.index(keys)
        result = self.ima.margin_search(TopOutput(network), data, labels, index, generator)
        clean_out, adv_out = self.forward_pair(network, data, result.adversarial)
        clean = ds_loss(clean_out, target)
        if self.ima.margin == "voxel":
            per_sample, _ = self.ima.adversarial_term(
                top_output(adv_out).float(), labels, top_output(clean_out).float(), result
            )
            adv = per_sample.mean()
        else:
            adv = ds_loss(adv_out, target)
        self.ima.record(index, result)
        beta = self.settings.ima.beta
        loss = (1 - beta) * clean + beta * adv
        failed = result.failed if result.failed is not None else torch.zeros(0)
        return loss, {
            "loss_clean": float(clean.detach()),
            "loss_adv": float(adv.detach()),
            "inner_failed": float(failed.float().mean()),
        }

    def margins(self) -> list[float]:
        return self.ima.bank.margins.cpu().tolist()

    def end_epoch(self) -> dict[str, float]:
        stats = self.ima.bank.end_epoch()
        self.ima.voxel_stats.reset()
        return stats
