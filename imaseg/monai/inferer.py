"""Attacked inference for ``monai.engines.SupervisedEvaluator``: MONAI's metric handlers then report Dice
under attack.

Budgets are those of ``imaseg evaluate``: L2 over each sample (a 2D image, or a whole volume through a
sliding window), and under a ``SliceInferer`` (a 2D network on volumes) L2 over each slice, every slice
attacked with its own budget.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.engines.utils import default_prepare_batch
from monai.inferers import Inferer, SliceInferer, SlidingWindowInferer
from torch import nn

from imaseg.attacks import AttackSettings, create_attack
from imaseg.metrics.prediction import predict_classes
from imaseg.monai.labels import class_indices

__all__ = ["AdversarialInferer", "prepare_batch_with_label"]


class _InfererForward(nn.Module):
    """``inferer(x, network)`` as a module (e.g. a sliding window), so gradients reach the full input."""

    def __init__(self, network: nn.Module, inferer: Inferer) -> None:
        super().__init__()
        self.network = network
        self.inferer = inferer

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.inferer(image, self.network)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the inner inferer must return a tensor, got {type(out).__name__}")
        return out


class AdversarialInferer(Inferer):
    """Attack each batch, then return the network's logits on the attacked images.

    Args:
        attack: a registered attack name ``KIND-NORM`` (``apgd-dice-l2``, ``worst-l2``, ``pgd-linf``...).
        eps: budget in model-input units (L2 over each sample, or Linf per voxel).
        settings: steps, clip range, seed... shared by the attack (default: 20 steps, no clip).
        inferer: the inner inferer (e.g. ``SlidingWindowInferer``) the attack differentiates through;
            ``None`` calls the network directly. Under a ``SliceInferer`` each slice is attacked with its
            own budget ``eps``, as ``imaseg evaluate`` attacks a 2D model on volumes.

    Labels: pass them with ``prepare_batch=prepare_batch_with_label`` in the evaluator (class indices or
    one-hot); without labels the attack pushes away from the network's own clean prediction.
    """

    def __init__(
        self,
        attack: str = "apgd-dice-l2",
        eps: float = 1.0,
        *,
        settings: AttackSettings | None = None,
        inferer: Inferer | None = None,
    ) -> None:
        super().__init__()
        self.attack = attack
        self.eps = eps
        self.settings = settings or AttackSettings()
        self.inferer = inferer
        create_attack(attack, nn.Identity(), eps=eps, settings=self.settings)  # validate now, not mid-evaluation

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, label: Any = None, **kwargs: Any) -> Any:
        adversarial = self.perturb(inputs, network, label)
        with torch.no_grad():
            return self.inferer(adversarial, network) if self.inferer is not None else network(adversarial)

    def perturb(self, inputs: torch.Tensor, network: Any, label: Any = None) -> torch.Tensor:
        """The attacked inputs ``(B, C, *spatial)``: each sample (under a ``SliceInferer``, each slice) moved
        by at most ``eps``."""
        images = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
        if isinstance(self.inferer, SliceInferer):
            return self._attack_slices(self.inferer, images, network, label)
        forward: nn.Module = _InfererForward(network, self.inferer) if self.inferer is not None else network
        return self._attack(forward, images, label)

    def _attack(self, forward: nn.Module, images: torch.Tensor, label: Any) -> torch.Tensor:
        if label is None:
            with torch.no_grad():
                labels = predict_classes(forward(images))
        else:
            labels = class_indices(label, images)
        return create_attack(self.attack, forward, eps=self.eps, settings=self.settings)(images, labels)

    def _attack_slices(self, inferer: SliceInferer, images: torch.Tensor, network: Any, label: Any) -> torch.Tensor:
        """``(B, C, *volume)`` -> every slice along the inferer's axis attacked alone, through a 2D window."""
        axis = inferer.spatial_dim + 2
        window = SlidingWindowInferer(
            roi_size=inferer.orig_roi_size,
            sw_batch_size=inferer.sw_batch_size,
            overlap=inferer.overlap,
            mode=inferer.mode,
            padding_mode=inferer.padding_mode,
            cval=inferer.cval,
        )
        moved = images.movedim(axis, 1)  # (B, S, C, *plane)
        slices = moved.reshape(-1, *moved.shape[2:])
        labels = None
        if label is not None:
            labels = class_indices(label, images).movedim(axis - 1, 1).reshape(-1, *slices.shape[2:])
        adversarial = self._attack(_InfererForward(network, window), slices, labels)
        return adversarial.reshape(moved.shape).movedim(1, axis)


def prepare_batch_with_label(batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any) -> tuple:
    """MONAI's default batch preparation, with the label also handed to the inferer as ``label=``."""
    image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
    return image, label, (), {"label": label}
