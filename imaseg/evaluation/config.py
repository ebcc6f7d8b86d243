"""Evaluation settings; every field is also an ``imaseg evaluate`` flag."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EvalConfig"]


def _f(default, help_text: str, **extra):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_text, **extra})
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass(frozen=True)
class EvalConfig:
    """Which attacks at which budgets, on which cases, and what to write."""

    attacks: list[str] = _f(
        ["apgd-dice-l2", "apgd-dlr-l2", "cospgd-l2", "segpgd-l2", "noise-l2", "worst-l2"],
        "attacks KIND-NORM (pgd, apgd-dice, apgd-dlr, segpgd, cospgd, noise, uniform; l2, linf) and worst-NORM "
        "(per-slice worst over the others). The default ensemble: APGD on soft Dice and on DLR, CosPGD, SegPGD, "
        "same-budget noise as a baseline, and their per-slice worst case",
    )
    eps: list[float] = _f(
        [0.0, 0.125, 0.25, 0.5, 1.0, 2.0], "L2 budgets in model-input units (L2 over a whole slice, or volume for 3D)"
    )
    eps_unit: str = _f(
        "l2",
        "unit of the L2 budgets: l2 (norm over the whole sample, model-input units) or rms (per-voxel RMS, so "
        "budgets compare across image sizes and 2D / 3D: eps_l2 = eps * sqrt(voxels of the sample))",
        choices=("l2", "rms"),
    )
    eps_linf: list[float] = _f([0.0, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255], "Linf budgets in model-input units")
    steps: int = _f(20, "PGD steps")
    restarts: int = _f(1, "PGD random restarts (per-sample worst kept)")
    losses: list[str] = _f(["ce", "dice"], "losses of pgd-* (ce, dice, dice-ce, dlr, ...): several -> per-sample worst")
    seed: int = _f(0, "attack seed")
    split: str = _f("test", "cases to evaluate: test, val, train or all (of the run's fold)")
    checkpoint: str = _f("last", "last, best, or a checkpoint path")
    batch_size: int = _f(32, "slices per attack batch (2D)")
    clip_range: list[float] | None = _f(
        None, "valid input range lo,hi for attacks (default: the run's training setting)"
    )
    hd95: bool = _f(True, "also compute HD95 (MONAI, in mm of the preprocessed grid)")
    steps_check: bool = _f(True, "sanity check: rerun pgd at 2x steps on a few cases at the largest budget")
    save_predictions: bool = _f(
        False, "write clean / attacked predictions and perturbations as NIfTI in source geometry"
    )
    overlays: int = _f(2, "cases with image / prediction / perturbation / flip-radius overlays for the report")
    roi_size: list[int] | None = _f(None, "3D: sliding-window size (default: the training spatial size)")
    device: str = _f("auto", "auto, cpu, cuda")
    amp: bool = _f(False, "bf16 autocast for the forward passes")
    tag: str = _f("default", "name of the evaluation folder RUN/eval/TAG")
    allow_training_cases: bool = _f(
        False,
        "with --cache / --data: allow cases the run trained on (refused by default: such numbers are not held out)",
    )
