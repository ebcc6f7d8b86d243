"""One evaluation cell = one attack at one budget over every case; cells are stored and reused.

A 2D model is attacked slice by slice (the budget is per slice, as in training) and its Dice is
computed on the stacked whole case; a 3D model is attacked on the whole volume through a
differentiable sliding-window forward (the budget is over the whole volume).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from imaseg.attacks import SlidingWindowForward, create_attack
from imaseg.attacks.factory import parse_attack_name
from imaseg.cache.reader import CachedCase, from_slices, to_slices
from imaseg.evaluation.metrics import case_metrics, slice_counts
from imaseg.metrics.dice import sample_dice
from imaseg.metrics.prediction import predict_classes

__all__ = ["Cell", "CaseOutput", "attack_case", "worst_of"]


@dataclass(frozen=True)
class Cell:
    attack: str  # "clean", "pgd-l2", ..., "worst-l2"
    eps: float

    @property
    def norm(self) -> str:
        return "none" if self.attack == "clean" else self.attack.rsplit("-", 1)[1]

    @property
    def key(self) -> str:
        return "clean" if self.attack == "clean" else f"{self.attack}__eps{self.eps:.6g}"


@dataclass
class CaseOutput:
    prediction: np.ndarray  # (*spatial) uint8
    perturbation: np.ndarray | None  # (C, *spatial) float32 in model-input units
    norms: list[float]  # realised norm per attacked sample (slice or volume)
    sample_dice: list[float]  # per-sample Dice (for worst-case selection)


def _forward(network, case: CachedCase, roi_size):
    if case.meta["slice_axis"] is not None or roi_size is None:
        return network
    if all(s <= r for s, r in zip(case.image.shape[1:], roi_size)):
        return network
    return SlidingWindowForward(network, roi_size, sw_batch_size=2)


def attack_case(
    network,
    case: CachedCase,
    cell: Cell,
    settings,
    device: torch.device,
    *,
    keep_perturbation: bool = False,
    steps: int | None = None,
    record_flips: bool = False,
):
    """Attack (or just predict, for ``clean``) one case; returns a :class:`CaseOutput` (and flips if asked)."""
    slice_axis = case.meta["slice_axis"]
    image = torch.from_numpy(case.image)
    label = torch.from_numpy(case.label.astype(np.int64))
    if slice_axis is not None:
        images, labels = to_slices(image, slice_axis), to_slices(label[None], slice_axis)[:, 0]
    else:
        images, labels = image[None], label[None]
    forward = _forward(network, case, settings.roi_size)
    batch = settings.batch_size if slice_axis is not None else 1
    predictions, deltas, norms, dices, flips = [], [], [], [], []
    for start in range(0, images.shape[0], batch):
        x = images[start : start + batch].to(device)
        y = labels[start : start + batch].to(device)
        if cell.attack == "clean":
            with torch.no_grad():
                logits = forward(x)
            pred = predict_classes(logits)
            dice = sample_dice(pred, y, logits.shape[1])
            delta = torch.zeros_like(x)
        else:
            kind, _ = parse_attack_name(cell.attack)
            attack = create_attack(
                cell.attack,
                forward,
                eps=cell.eps,
                steps=1 if cell.eps == 0 and kind not in ("noise", "uniform") else (steps or settings.steps),
                restarts=settings.restarts,
                losses=settings.losses,
                clip_range=settings.clip_range,
                seed=settings.seed + start,
                autocast_dtype=torch.bfloat16 if settings.amp else None,
                record_flips=record_flips,
            )
            result = attack.run(x, y)
            pred, dice, delta = result.prediction, result.dice, result.adversarial - x
            if record_flips:
                flips.append(result.flip_radius.cpu())
        predictions.append(pred.to(torch.uint8).cpu())
        dices += dice.tolist()
        norms += (
            delta.flatten(1).norm(dim=1).tolist() if cell.norm != "linf" else delta.flatten(1).abs().amax(1).tolist()
        )
        if keep_perturbation:
            deltas.append(delta.cpu())
    stacked = torch.cat(predictions)
    prediction = from_slices(stacked[:, None], slice_axis)[0] if slice_axis is not None else stacked[0]
    perturbation = None
    if keep_perturbation:
        d = torch.cat(deltas)
        perturbation = (from_slices(d, slice_axis) if slice_axis is not None else d[0]).numpy().astype(np.float32)
    output = CaseOutput(prediction.numpy(), perturbation, norms, dices)
    if record_flips:
        f = torch.cat(flips)
        return output, (from_slices(f[:, None], slice_axis)[0] if slice_axis is not None else f[0]).numpy()
    return output


def worst_of(outputs: list[CaseOutput], case: CachedCase) -> CaseOutput:
    """Per sample (slice, or whole volume in 3D), the output with the lowest sample Dice."""
    slice_axis = case.meta["slice_axis"]
    dice = np.array([o.sample_dice for o in outputs])  # (A, S)
    choice = dice.argmin(0)
    if slice_axis is None:
        best = outputs[int(choice[0])]
        return CaseOutput(best.prediction, best.perturbation, best.norms, best.sample_dice)
    stacked = np.stack([np.moveaxis(o.prediction, slice_axis, 0) for o in outputs])  # (A, S, *plane)
    picked = stacked[choice, np.arange(len(choice))]
    norms = [outputs[a].norms[s] for s, a in enumerate(choice)]
    return CaseOutput(np.moveaxis(picked, 0, slice_axis), None, norms, dice.min(0).tolist())


def case_record(output: CaseOutput, case: CachedCase, num_classes: int, cell: Cell, *, hd95: bool) -> dict:
    """Metrics of one case in one cell, with the budget in source units and as per-voxel RMS."""
    label = torch.from_numpy(case.label.astype(np.int64))
    pred = torch.from_numpy(output.prediction.astype(np.int64))
    spacing = np.linalg.norm(case.affine[: label.dim(), : label.dim()], axis=0)
    record = case_metrics(pred, label, num_classes, spacing=spacing, hd95=hd95)
    slice_axis = case.meta["slice_axis"]
    if slice_axis is not None:
        record["slices"] = slice_counts(
            torch.movedim(pred, slice_axis, 0), torch.movedim(label, slice_axis, 0), num_classes
        )
        sample_voxels = case.image.size // case.image.shape[slice_axis + 1]
    else:
        sample_voxels = case.image.size
    scale = float(case.meta.get("intensity_scale", 1.0)) or 1.0
    record["norm_mean"] = float(np.mean(output.norms)) if output.norms else 0.0
    record["eps_source"] = cell.eps / scale
    record["eps_rms"] = cell.eps / math.sqrt(sample_voxels) if cell.norm == "l2" else cell.eps
    record["sample_dice"] = output.sample_dice
    return record
