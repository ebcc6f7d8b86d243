"""Per-epoch validation: global voxel Dice per class, clean and under a cheap soft-Dice PGD."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from imaseg.attacks import PGD
from imaseg.metrics.dice import confusion_counts, dice_from_counts
from imaseg.metrics.prediction import predict_classes

__all__ = ["validate"]


@torch.no_grad()
def validate(
    network: torch.nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    *,
    device: torch.device,
    eps: float = 0.5,
    steps: int = 5,
    clip_range=None,
    seed: int = 0,
    class_names: dict | None = None,
) -> dict:
    """Global voxel Dice (tp, fp, fn summed over all validation samples) per foreground class and their
    mean, clean and under an L2 soft-Dice PGD of ``steps`` steps at ``eps`` (skipped when ``steps`` is 0).

    ``batches`` yields ``(images, labels (B, 1, *S))``; ``network`` may be a sliding-window forward."""
    was_training = network.training
    network.eval()
    counts = {"clean": torch.zeros(3, num_classes, dtype=torch.int64)}
    if steps > 0 and eps > 0:
        counts["robust"] = torch.zeros(3, num_classes, dtype=torch.int64)
    try:
        start = 0
        for images, labels in batches:
            images, labels = images.to(device), labels[:, 0].long().to(device)
            pred = predict_classes(network(images))
            counts["clean"] += torch.stack(confusion_counts(pred, labels, num_classes)).sum(1).cpu()
            if "robust" in counts:
                attack = PGD(network, eps=eps, steps=steps, loss="dice", clip_range=clip_range, seed=seed + start)
                result = attack.run(images, labels)
                if result.prediction is None:  # PGD with select="worst" always predicts
                    raise RuntimeError("PGD returned no prediction")
                counts["robust"] += torch.stack(confusion_counts(result.prediction, labels, num_classes)).sum(1).cpu()
            start += images.shape[0]
    finally:
        network.train(was_training)
    out = {}
    for kind, (tp, fp, fn) in counts.items():
        dice = dice_from_counts(tp, fp, fn)[1:]
        prefix = "val_dice" if kind == "clean" else "val_robust_dice"
        out[prefix] = float(torch.nanmean(dice))
        if kind == "clean":
            for c, value in enumerate(dice.tolist(), start=1):
                out[f"val_dice_{(class_names or {}).get(c, c)}".replace(" ", "_")] = value
    return out
