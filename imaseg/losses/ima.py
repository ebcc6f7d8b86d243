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
  first failure -- no bisection passes, so an epoch costs what PGD-AT with the same steps costs;
* the adversarial example is the final iterate at radius ``E_i`` (the sample's margin, IMA's target);
* the adversarial term is voxel-level: cross-entropy weighted 1 on *vulnerable* voxels (wrong on the
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
from typing import cast

import torch
from torch import nn

from imaseg.attacks.margin_search import DicePredicate, MarginResult, MarginSearch
from imaseg.functional import as_class_labels, dice_ce_per_sample, soft_dice_per_sample, weighted_ce_per_sample
from imaseg.losses.margins import MarginBank
from imaseg.losses.voxel_stats import VoxelMarginStats
from imaseg.metrics.prediction import predict_classes
from imaseg.utils.checks import check_choice, check_non_negative, check_positive_int, check_probability

__all__ = ["MARGIN_MODES", "IMALoss"]

MARGIN_MODES = ("sample", "voxel")


class IMALoss(nn.Module):
    """IMA for segmentation; the margins live in ``self.bank`` (a buffer-holding submodule).

    Args:
        sample_ids: stable ids of the training samples (index order = the ``index`` given to forward).
        margin: ``"voxel"`` or ``"sample"`` (see the module docstring).
        delta: initial margin and per-epoch increment (L2, model-input units).
        eps_max: largest margin.
        eps_min: smallest margin (0: the published rule; a fixed budget's eps: never train below it).
        beta: weight of the adversarial term.
        tau: Dice threshold of the "still correct" predicate.
        dice_reduction: ``"max"``, ``"mean"`` or ``"min"`` over classes; default max (sample mode,
            as the official code) or mean (voxel mode).
        steps: inner PGD steps.
        alpha_factor: inner step size as a multiple of ``E_i / steps``.
        bisection_steps: sample mode's bisection steps (voxel mode interpolates instead).
        empty_tolerance: foreground fraction tolerated on samples with empty ground truth.
        empty_policy: ``"tolerance"`` (ours, above) or ``"fail"`` (the official code: empty ground truth fails).
        robust_weight: voxel mode's weight for voxels robust beyond the margin.
        voxel_start: voxel mode's random-start radius as a fraction of the margin.
        voxel_alpha_factor: voxel mode's step as a multiple of ``E_i / steps``.
        clip_range: valid input range for the inner attack (``None``: no clamp).
        num_classes: classes including background (for the voxel statistics).
    """

    def __init__(
        self,
        sample_ids: Sequence[str],
        *,
        margin: str = "voxel",
        delta: float = 0.25,
        eps_max: float = 1.0,
        eps_min: float = 0.0,
        beta: float = 0.5,
        tau: float = 0.6,
        dice_reduction: str | None = None,
        steps: int = 10,
        alpha_factor: float = 4.0,
        bisection_steps: int = 10,
        empty_tolerance: float = 0.002,
        empty_policy: str = "tolerance",
        robust_weight: float = 0.1,
        voxel_start: float = 0.05,
        voxel_alpha_factor: float = 2.5,
        clip_range: tuple[float, float] | None = None,
        num_classes: int = 2,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.margin = check_choice("margin", margin, MARGIN_MODES)
        self.bank = MarginBank(sample_ids, delta=delta, eps_max=eps_max, eps_min=eps_min)
        self.beta = check_probability("beta", beta)
        reduction = dice_reduction or ("max" if self.margin == "sample" else "mean")
        self.predicate = DicePredicate(tau, reduction, empty_tolerance, empty_policy)
        self.steps = check_positive_int("steps", steps)
        self.alpha_factor = check_non_negative("alpha_factor", alpha_factor)
        self.bisection_steps = check_positive_int("bisection_steps", bisection_steps, minimum=0)
        self.robust_weight = check_probability("robust_weight", robust_weight)
        self.voxel_start = check_probability("voxel_start", voxel_start)
        self.voxel_alpha_factor = check_non_negative("voxel_alpha_factor", voxel_alpha_factor)
        self.clip_range = clip_range
        self.autocast_dtype = autocast_dtype
        self.voxel_stats = VoxelMarginStats(num_classes, eps_max)

    def search(self, network: nn.Module, generator: torch.Generator) -> MarginSearch:
        """The inner attack for this mode (model frozen and in eval mode while it runs)."""
        voxel = self.margin == "voxel"
        return MarginSearch(
            network,
            delta=self.bank.delta,
            steps=self.steps,
            alpha_factor=self.voxel_alpha_factor if voxel else self.alpha_factor,
            loss="dice-ce",
            predicate=self.predicate,
            bisection_steps=0 if voxel else self.bisection_steps,
            record_flips=voxel,
            start_fraction=self.voxel_start if voxel else None,
            clip_range=self.clip_range,
            generator=generator,
            autocast_dtype=self.autocast_dtype,
        )

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
    ):
        """One IMA loss evaluation; returns ``(loss, logs)``.

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
        margins = self.bank.lookup(index).to(image.device)
        result = cast(MarginResult, self.search(network or model, generator).run(image, label, eps=margins))
        if result.failed is None or result.boundary is None:  # the margin search always sets both
            raise RuntimeError("the margin search returned no `failed` / `boundary`")
        adversarial = result.adversarial
        if joint_forward:
            clean_logits, adv_logits = model(torch.cat([image, adversarial])).float().chunk(2)
        else:
            clean_logits, adv_logits = model(image).float(), model(adversarial).float()
        clean = dice_ce_per_sample(clean_logits, label)
        if self.margin == "voxel":
            if result.flip_radius is None:  # recorded in voxel mode
                raise RuntimeError("the margin search recorded no flip radii")
            clean_pred = predict_classes(clean_logits.detach())
            vulnerable = (clean_pred != label) | torch.isfinite(result.flip_radius)
            weight = torch.where(vulnerable, 1.0, self.robust_weight)
            adv = weighted_ce_per_sample(adv_logits, label, weight) + soft_dice_per_sample(adv_logits, label)
            self.voxel_stats.update(label.cpu(), clean_pred.cpu(), result.flip_radius.cpu())
            vulnerable_fraction = float(vulnerable.float().mean())
        else:
            adv = dice_ce_per_sample(adv_logits, label)
            vulnerable_fraction = float("nan")
        self.bank.record(index, result.boundary, ~result.failed)
        loss = (1 - self.beta) * clean.mean() + self.beta * adv.mean()
        logs = {
            "loss_clean": clean.mean().item(),
            "loss_adv": adv.detach().mean().item(),
            "inner_failed": float(result.failed.float().mean()),
            "adv_norm": float(result.norm.mean()),
            "vulnerable_voxels": vulnerable_fraction,
        }
        return loss, logs
