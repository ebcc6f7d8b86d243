"""One evaluation cell = one attack at one budget over every case; cells are stored and reused.

A 2D model is attacked slice by slice (the budget is per slice, as in training) and its Dice is
computed on the stacked whole case; a 3D model is attacked on the whole volume through a
differentiable sliding-window forward (the budget is over the whole volume). With a ``postprocess``
(:mod:`imaseg.postprocess`, e.g. ``lcc``) the attacks still optimise the raw logits; the whole case's
prediction is post-processed before it is scored, and the raw one is kept for the worst case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import cast

import numpy as np
import torch

from imaseg.attacks import AttackSettings, AttackSpec, create_attack, parse_attack_name
from imaseg.cache.reader import CachedCase
from imaseg.evaluation.metrics import case_metrics, slice_counts
from imaseg.inference import InferenceLayout, case_forward, join_samples, predict_batch, sample_batches, to_samples
from imaseg.metrics.dice import sample_dice
from imaseg.postprocess import postprocess
from imaseg.summary import CLEAN, cell_key
from imaseg.utils.units import PHYSICAL_UNITS

__all__ = [
    "CLEAN",
    "CaseOutput",
    "CaseSettings",
    "Cell",
    "attack_case",
    "case_record",
    "l2_budget",
    "sample_counts",
    "worst_of",
]


@dataclass(frozen=True)
class Cell:
    """One attack at one budget (``attack`` is ``"clean"`` or a registered ``KIND-NORM`` name)."""

    attack: str
    eps: float

    @property
    def is_clean(self) -> bool:
        return self.attack == CLEAN

    @property
    def spec(self) -> AttackSpec | None:
        """The attack's registry entry (``None`` for the clean cell)."""
        return None if self.is_clean else parse_attack_name(self.attack)[0]

    @property
    def norm(self) -> str:
        return "none" if self.is_clean else parse_attack_name(self.attack)[1]

    @property
    def key(self) -> str:
        return cell_key(self.attack, self.eps)  # the one spelling, shared with the summary


@dataclass
class CaseOutput:
    prediction: np.ndarray  # (*spatial) uint8
    perturbation: np.ndarray | None  # (C, *spatial) float32 in model-input units
    norms: list[float]  # realised norm per attacked sample (slice or volume)
    sample_dice: list[float]  # per-sample Dice (for worst-case selection)
    flip_radius: np.ndarray | None = None  # (*spatial) per-voxel flip radius, when recorded
    raw: np.ndarray | None = None  # (*spatial) uint8 the network's argmax, when ``prediction`` is post-processed


@dataclass(frozen=True)
class CaseSettings:
    """What :func:`attack_case` needs: the shared attack settings, the 2D batch and the 3D window."""

    attack: AttackSettings
    batch_size: int
    roi_size: tuple[int, ...] | None
    eps_unit: str = "l2"  # "l2": L2 budgets as given; "rms": per-voxel RMS, times sqrt(voxels of the sample)
    postprocess: str = "none"  # applied to each case's prediction before it is scored (imaseg.postprocess)


def l2_budget(cell: Cell, sample_voxels: int, eps_unit: str) -> float:
    """The L2 budget of one attacked sample: ``eps`` itself, or ``eps * sqrt(voxels)`` for an RMS budget
    (Linf budgets are per voxel already).

    >>> l2_budget(Cell("pgd-l2", 0.01), 10_000, "rms"), l2_budget(Cell("pgd-l2", 0.5), 10_000, "l2")
    (1.0, 0.5)
    """
    if cell.norm == "l2" and eps_unit == "rms":
        return cell.eps * math.sqrt(sample_voxels)
    return cell.eps


def _layout(case: CachedCase, settings: CaseSettings) -> InferenceLayout:
    return InferenceLayout(case.meta.slice_axis, settings.roi_size, settings.batch_size)


def _case_samples(case: CachedCase, slice_axis: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The attacked samples of a case and their labels: its slices (2D) or the whole volume (3D)."""
    label = torch.from_numpy(case.label.astype(np.int64))
    return to_samples(torch.from_numpy(case.image), slice_axis), to_samples(label[None], slice_axis)[:, 0]


def sample_spacing(case: CachedCase, slice_axis: int | None) -> tuple[float, ...]:
    """mm per voxel along each spatial axis of the case's samples (its grid's, without the slice axis)."""
    dims = case.image.ndim - 1
    spacing = [float(v) for v in np.linalg.norm(np.asarray(case.affine)[:dims, :dims], axis=0)]
    return tuple(v for axis, v in enumerate(spacing) if axis != slice_axis)


def _predict_clean(forward, x: torch.Tensor, y: torch.Tensor):
    pred, num_classes = predict_batch(forward, x)
    return pred, sample_dice(pred, y, num_classes), torch.zeros_like(x), None, torch.zeros(x.shape[0])


def _attack_batch(forward, x, y, cell: Cell, settings: AttackSettings, start: int, eps_unit: str = "l2"):
    spec = cell.spec
    assert spec is not None
    steps = 1 if cell.eps == 0 and spec.uses_steps else settings.steps
    eps = l2_budget(cell, x[0].numel(), eps_unit)
    attack = create_attack(
        cell.attack, forward, eps=eps, settings=replace(settings, steps=steps, seed=settings.seed + start)
    )
    result = attack.run(x, y)
    flips = cast(torch.Tensor, result.flip_radius).cpu() if settings.record_flips else None
    return result.prediction, result.dice, result.adversarial - x, flips, result.norm


def attack_case(
    network,
    case: CachedCase,
    cell: Cell,
    settings: CaseSettings,
    device: torch.device,
    *,
    keep_perturbation: bool = False,
    steps: int | None = None,
    record_flips: bool = False,
) -> CaseOutput:
    """Attack (or just predict, for ``clean``) one case; flip radii are in the output when recorded."""
    layout = _layout(case, settings)
    slice_axis = layout.slice_axis
    images, labels = _case_samples(case, slice_axis)
    forward = case_forward(network, case.image.shape[1:], layout)
    attack_settings = replace(
        settings.attack,
        steps=steps or settings.attack.steps,
        record_flips=record_flips,
        spacing=sample_spacing(case, slice_axis),
    )
    predictions, deltas, norms, dices, flips = [], [], [], [], []
    for start, batch in sample_batches(images, layout):
        x, y = images[batch].to(device), labels[batch].to(device)
        if cell.is_clean:
            pred, dice, delta, flip, realised = _predict_clean(forward, x, y)
        else:
            pred, dice, delta, flip, realised = _attack_batch(
                forward, x, y, cell, attack_settings, start, settings.eps_unit
            )
        if flip is not None:
            flips.append(flip)
        predictions.append(pred.to(torch.uint8).cpu())
        dices += dice.tolist()
        if cell.norm in PHYSICAL_UNITS:  # a physical budget: the attack's own measure (relative, not of delta)
            norms += realised.tolist()
        else:
            norms += (
                delta.flatten(1).norm(dim=1).tolist()
                if cell.norm != "linf"
                else delta.flatten(1).abs().amax(1).tolist()
            )
        if keep_perturbation:
            deltas.append(delta.cpu())
    perturbation = (
        join_samples(deltas, slice_axis, channel=True).numpy().astype(np.float32) if keep_perturbation else None
    )
    flip_radius = join_samples(flips, slice_axis, channel=False).numpy() if flips else None
    prediction = join_samples(predictions, slice_axis, channel=False).numpy()
    output = CaseOutput(prediction, perturbation, norms, dices, flip_radius)
    return _postprocessed(output, case, settings.postprocess)


def _postprocessed(output: CaseOutput, case: CachedCase, name: str) -> CaseOutput:
    """``output`` with its whole-case prediction post-processed (the raw one kept in ``raw``) and the per-sample
    Dice of what is scored; unchanged for ``none``."""
    if name == "none":
        return output
    raw = output.raw if output.raw is not None else output.prediction
    prediction = postprocess(raw, name)
    slice_axis = case.meta.slice_axis
    label = torch.from_numpy(case.label.astype(np.int64))
    pred = torch.from_numpy(prediction.astype(np.int64))
    classes = int(max(int(label.max()), int(pred.max()))) + 1  # absent classes do not count in sample Dice
    dice = sample_dice(to_samples(pred[None], slice_axis)[:, 0], to_samples(label[None], slice_axis)[:, 0], classes)
    return replace(output, prediction=prediction, sample_dice=dice.tolist(), raw=raw)


def worst_of(outputs: list[CaseOutput], case: CachedCase, choice: np.ndarray, postprocess: str = "none") -> CaseOutput:
    """The case's output built from ``outputs[choice[s]]`` for each sample ``s`` (slice, or the volume in 3D);
    the choice comes from :func:`imaseg.metrics.worst.choose_worst` over the whole evaluation.

    With a ``postprocess`` the members' *raw* predictions are stitched and the result post-processed, as a
    deployed model would post-process what the per-slice attacks make it predict."""
    slice_axis = case.meta.slice_axis
    dice = np.array([o.sample_dice for o in outputs])  # (A, S)
    choice = np.asarray(choice, dtype=np.int64)
    picked_dice = dice[choice, np.arange(len(choice))].tolist()
    if slice_axis is None:
        best = outputs[int(choice[0])]
        return CaseOutput(best.prediction, best.perturbation, best.norms, picked_dice, raw=best.raw)
    raw = [o.raw if o.raw is not None else o.prediction for o in outputs]
    stacked = np.stack([np.moveaxis(r, slice_axis, 0) for r in raw])  # (A, S, *plane)
    picked = stacked[choice, np.arange(len(choice))]
    norms = [outputs[a].norms[s] for s, a in enumerate(choice)]
    output = CaseOutput(np.moveaxis(picked, 0, slice_axis), None, norms, picked_dice)
    return _postprocessed(output, case, postprocess)


def sample_counts(record: dict) -> list:
    """Per attacked sample, per foreground class ``[tp, fp, fn]``: the slices of a 2D case, or the volume."""
    if "slices" in record:
        return record["slices"]
    return [[list(v) for v in zip(record["tp"], record["fp"], record["fn"])]]


def case_record(
    output: CaseOutput, case: CachedCase, num_classes: int, cell: Cell, *, hd95: bool, eps_unit: str = "l2"
) -> dict:
    """Metrics of one case in one cell, with the budget in source units and as per-voxel RMS."""
    label = torch.from_numpy(case.label.astype(np.int64))
    pred = torch.from_numpy(output.prediction.astype(np.int64))
    spacing = np.linalg.norm(case.affine[: label.dim(), : label.dim()], axis=0)
    record = case_metrics(pred, label, num_classes, spacing=spacing, hd95=hd95)
    slice_axis = case.meta.slice_axis
    if slice_axis is not None:
        record["slices"] = slice_counts(
            torch.movedim(pred, slice_axis, 0), torch.movedim(label, slice_axis, 0), num_classes
        )
        sample_voxels = case.image.size // case.image.shape[slice_axis + 1]
    else:
        sample_voxels = case.image.size
    scale = case.meta.intensity_divisor
    record["norm_mean"] = float(np.mean(output.norms)) if output.norms else 0.0
    eps = l2_budget(cell, sample_voxels, eps_unit)
    record["eps_l2"] = eps
    record["eps_source"] = eps if cell.norm in PHYSICAL_UNITS else eps / scale  # relative budgets have no scale
    record["eps_rms"] = eps / math.sqrt(sample_voxels) if cell.norm == "l2" else eps
    record["sample_dice"] = output.sample_dice
    return record
