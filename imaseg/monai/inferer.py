"""Attacked inference for ``monai.engines.SupervisedEvaluator``: MONAI's metric handlers then report Dice
under attack."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines.utils import default_prepare_batch
from monai.inferers import Inferer
from torch import nn

from imaseg.attacks import AttackSettings, create_attack
from imaseg.metrics.prediction import predict_classes

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
            ``None`` calls the network directly.

    Labels: pass them with ``prepare_batch=prepare_batch_with_label`` in the evaluator; without labels
    the attack pushes away from the network's own clean prediction.
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
        forward: nn.Module = _InfererForward(network, self.inferer) if self.inferer is not None else network
        images = inputs.as_tensor() if hasattr(inputs, "as_tensor") else inputs
        if label is None:
            with torch.no_grad():
                label = predict_classes(forward(images))
        adversarial = create_attack(self.attack, forward, eps=self.eps, settings=self.settings)(images, label)
        with torch.no_grad():
            return forward(adversarial)


def prepare_batch_with_label(batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any) -> tuple:
    """MONAI's default batch preparation, with the label also handed to the inferer as ``label=``."""
    image, label = default_prepare_batch(batchdata, device, non_blocking, **kwargs)
    return image, label, (), {"label": label}
