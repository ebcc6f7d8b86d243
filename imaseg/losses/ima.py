"""IMA: Increasing-Margin Adversarial training (Ma & Liang, arXiv 2005.09147; CMPB 2023), for segmentation.

Every training sample keeps its own L2 margin ``E_i`` (a :class:`~imaseg.losses.MarginBank` buffer). Each
iteration runs the inner :class:`~imaseg.attacks.MarginSearch` inside ``E_i`` and trains on
``(1 - beta) * clean + beta * adversarial``; margins grow by ``delta`` per epoch while a sample survives
and fall back to its boundary estimate when it fails. Two modes:

``margin="sample"`` -- the published algorithm as the official segmentation code runs it: 20-step
L2 PGD with step 0.2 E_i from a start of radius max(E_i - delta, delta), predicate "max over foreground
classes of hard Dice >= tau" (``dice_reduction`` may make it mean or min), 10 bisection steps to the
Dice = tau boundary, adversarial term = per-sample soft Dice + CE on the boundary point (or on the
final iterate of samples that survive).

``margin="voxel"`` -- ours. The image-level loss lets one good structure hide a failing one, and
bisection spends ten forward passes to locate a single number per image. Voxel mode records, along
the same PGD path, the radius at which every voxel's class first changed (the attack's flip record):

* the predicate takes the *mean* over classes by default (a failing RV is not hidden by a good LV);
* the path walks outwards: it starts at radius ``voxel_start * E_i`` (not at ``max(E_i - delta, delta)``
  as the official code, whose start already sits near the sphere, so that its "boundary" is always
  about the current margin and a failing sample's margin barely shrinks) with steps of
  ``voxel_alpha_factor * E_i / steps``; the norm where the predicate first fails, and each voxel's flip
  radius, are then real distances from the clean input;
* the boundary norm is interpolated on the Dice-vs-norm line between the iterates that bracket the
  first failure -- no bisection passes, so a training step costs about 1.2x PGD-AT's with the same steps
  (1.17x in ``benchmarks/ima_overhead.py``);
* the adversarial example is the final iterate at radius ``E_i`` (the sample's margin, IMA's target);
* the adversarial term is voxel-level (:class:`~imaseg.losses.adversarial.VoxelWeightedLoss`, also an
  option of PGD-AT, so its effect can be told from the margins'): cross-entropy weighted 1 on *vulnerable* voxels (wrong on the
  clean input, or flipped at a radius inside ``E_i``) and ``robust_weight`` on voxels already robust
  beyond the margin, normalised per sample, plus the per-sample soft Dice. The gradient budget goes
  where the decision boundary is inside the margin instead of being averaged away over the many
  voxels (mostly background and organ interiors) that no perturbation of that size moves;
* :class:`~imaseg.losses.voxel_stats.VoxelMarginStats` keeps, per class and for class boundaries
  versus interiors, the fraction of voxels that flip inside the margin and their radius histogram.

Empty ground truth (slices above the base or below the apex): Dice is undefined. The official code
counts such slices as failed at once, so their margins collapse to ~0 and they get no robustness
against false-positive blobs (the ones that hurt case-level Dice most). Here they count as correct
while at most ``empty_tolerance`` of their voxels are predicted foreground, so they get finite
margins and the same grow / shrink dynamics as every other slice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from imaseg.attacks.base import Attack
from imaseg.attacks.margin_search import DicePredicate, MarginResult, MarginSearch
from imaseg.attacks.physical_margin import PhysicalMarginSearch
from imaseg.functional import as_class_labels, dice_ce_per_sample
from imaseg.losses.adversarial import VoxelWeightedLoss
from imaseg.losses.ima_config import MARGIN_MODES, IMAConfig
from imaseg.losses.margins import MarginBank
from imaseg.losses.voxel_stats import VoxelMarginStats
from imaseg.metrics.prediction import predict_classes

__all__ = ["MARGIN_MODES", "IMALoss"]


class IMALoss(nn.Module):
    """IMA for segmentation; the margins live in ``self.bank`` (a buffer-holding submodule).

    Args:
        sample_ids: stable ids of the training samples (index order = the ``index`` given to forward).
        settings: IMA's settings, checked once (:class:`~imaseg.losses.IMAConfig`: mode, margins,
            predicate, inner attack, voxel-mode weights); default: its defaults.
        clip_range: valid input range for the inner attack (``None``: no clamp).
        num_classes: classes including background (for the voxel statistics).
        autocast_dtype: ``torch.bfloat16`` / ``torch.float16`` forward passes of the inner attack, or ``None``.
        **changes: single settings replacing those of ``settings``, for convenience
            (``IMALoss(ids, margin="sample", delta=0.5)``); an unknown name raises ``TypeError``.

    Raises:
        ValueError: a setting out of range (see :class:`~imaseg.losses.IMAConfig`).

    Example:
        >>> loss = IMALoss(["a", "b"], IMAConfig(margin="sample", eps_max=2.0), num_classes=3)
        >>> loss.margin, loss.predicate.reduction, IMALoss(["a"], delta=0.5).bank.delta
        ('sample', 'max', 0.5)
    """

    def __init__(
        self,
        sample_ids: Sequence[str],
        settings: IMAConfig | None = None,
        *,
        clip_range: tuple[float, float] | None = None,
        num_classes: int = 2,
        autocast_dtype: torch.dtype | None = None,
        **changes: Any,
    ) -> None:
        super().__init__()
        settings = settings if settings is not None else IMAConfig()
        self.settings = settings.replace(**changes) if changes else settings
        s = self.settings
        self.bank = MarginBank(
            sample_ids, delta=s.delta, eps_max=s.eps_max, eps_min=s.eps_min, survival_share=s.survival_share
        )
        self.predicate = DicePredicate(s.tau, s.reduction, s.empty_tolerance, s.empty_policy, relative=s.relative_tau)
        self.clip_range = clip_range
        self.autocast_dtype = autocast_dtype
        self.voxel_stats = VoxelMarginStats(num_classes, s.eps_max)
        self.voxel_loss = VoxelWeightedLoss(s.robust_weight)  # the adversarial term of voxel mode

    @property
    def margin(self) -> str:
        """``"voxel"`` or ``"sample"``."""
        return self.settings.margin

    def search(self, network: nn.Module, generator: torch.Generator) -> Attack:
        """The inner attack for this mode (model frozen and in eval mode while it runs): the L2 margin search, or
        for a physical ``threat`` that kind's optimised attack inside the margins."""
        s, voxel = self.settings, self.margin == "voxel"
        if s.threat != "pgd":
            return PhysicalMarginSearch(
                network,
                threat=s.threat,
                steps=s.steps,
                predicate=self.predicate,
                bisection_steps=s.bisection_steps,
                clip_range=self.clip_range,
                generator=generator,
                autocast_dtype=self.autocast_dtype,
            )
        return MarginSearch(
            network,
            delta=self.bank.delta,
            steps=s.steps,
            alpha_factor=s.voxel_alpha_factor if voxel else s.alpha_factor,
            loss="dice-ce",
            predicate=self.predicate,
            bisection_steps=0 if voxel else s.bisection_steps,
            record_flips=voxel,
            start_fraction=s.voxel_start if voxel else None,
            clip_range=self.clip_range,
            generator=generator,
            autocast_dtype=self.autocast_dtype,
        )

    def margin_search(
        self,
        network: nn.Module,
        image: torch.Tensor,
        label: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> MarginResult:
        """The inner attack at each sample's margin (``label``: ``(B, *spatial)`` class indices)."""
        margins = self.bank.lookup(index).to(image.device)
        result = cast(MarginResult, self.search(network, generator).run(image, label, eps=margins))
        if result.failed is None or result.boundary is None:  # the margin search always sets both
            raise RuntimeError("the margin search returned no `failed` / `boundary`")
        return result

    def adversarial_term(
        self, adv_logits: torch.Tensor, label: torch.Tensor, clean_logits: torch.Tensor, result: MarginResult
    ) -> tuple[torch.Tensor, torch.Tensor | float]:
        """``(per-sample adversarial loss (B,), vulnerable-voxel fraction)``: voxel mode's weighted loss (and its
        statistics), or sample mode's soft Dice + CE (fraction NaN: not a sample-mode quantity)."""
        if self.margin != "voxel":
            return dice_ce_per_sample(adv_logits, label), float("nan")
        if result.flip_radius is None:  # recorded in voxel mode
            raise RuntimeError("the margin search recorded no flip radii")
        clean_pred = predict_classes(clean_logits.detach())
        adv = self.voxel_loss(adv_logits, label, clean_prediction=clean_pred, flip_radius=result.flip_radius)
        self.voxel_stats.update(label, clean_pred, result.flip_radius)
        return adv, self.voxel_loss.vulnerable(label, clean_pred, result.flip_radius).float().mean()

    def record(self, index: torch.Tensor, result: MarginResult) -> None:
        """One visit per sample for the margin update: the boundary norm found and whether it survived."""
        if result.failed is None or result.boundary is None:
            raise RuntimeError("the margin search returned no `failed` / `boundary`")
        self.bank.record(index, result.boundary, ~result.failed)

    def forward(
        self,
        model: nn.Module,
        image: torch.Tensor,
        label: torch.Tensor,
        index: torch.Tensor,
        *,
        generator: torch.Generator,
        network: nn.Module | None = None,
        joint_forward: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """One IMA loss evaluation; returns ``(loss, logs)``.

        Nothing here waits for the device: the logs are detached 0-dim tensors (``float()`` them after the
        optimiser step), and voxel mode's flip statistics copy to the host in the background.

        Args:
            model: the model whose forward builds the loss graph (a DDP wrapper under torchrun).
            image: ``(B, C, *spatial)``; label: ``(B, *spatial)`` or ``(B, 1, *spatial)`` class indices
                (integer or float, tensor or ``MetaTensor``).
            index: ``(B,)`` positions of the samples in ``sample_ids``.
            generator: random starts of the inner attack.
            network: the bare network for the inner attack (defaults to ``model``).
            joint_forward: forward clean and adversarial batches as one (safe with instance norm).
        """
        label = as_class_labels(label, image)  # MONAI conventions: (B, 1, ...) float or MetaTensor
        result = self.margin_search(network or model, image, label, index, generator)
        adversarial = result.adversarial
        if joint_forward:
            clean_logits, adv_logits = model(torch.cat([image, adversarial])).float().chunk(2)
        else:
            clean_logits, adv_logits = model(image).float(), model(adversarial).float()
        clean = dice_ce_per_sample(clean_logits, label)
        adv, vulnerable_fraction = self.adversarial_term(adv_logits, label, clean_logits, result)
        self.record(index, result)
        beta = self.settings.beta
        loss = (1 - beta) * clean.mean() + beta * adv.mean()
        logs = {
            "loss_clean": clean.detach().mean(),
            "loss_adv": adv.detach().mean(),
            "inner_failed": cast(torch.Tensor, result.failed).float().mean(),
            "adv_norm": result.norm.detach().mean(),
            "vulnerable_voxels": vulnerable_fraction,
        }
        return loss, logs
