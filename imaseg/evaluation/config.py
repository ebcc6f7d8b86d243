"""Evaluation settings; every field is also an ``imaseg evaluate`` flag."""

from __future__ import annotations

from dataclasses import dataclass

from imaseg.attacks.geometry import NORMS
from imaseg.attacks.registry import ENSEMBLE_MEMBERS, attack_kinds
from imaseg.config import setting
from imaseg.postprocess import POSTPROCESS_HELP, POSTPROCESSORS
from imaseg.run import parse_clip_range
from imaseg.utils.checks import check_choice

__all__ = ["DEFAULT_TAG", "EvalConfig"]

DEFAULT_TAG = "default"


def _attacks_help() -> str:
    ensembles = ", ".join(f"{kind}-NORM" for kind in attack_kinds(ensemble=True))
    return (
        f"attacks KIND-NORM ({', '.join(attack_kinds(ensemble=False))}; {', '.join(NORMS)}) and {ensembles} "
        "(per slice, the member that lowers global Dice most). Physical kinds name their own unit instead of a "
        "norm (bias-field-rel: max relative intensity change; snr-noise-nsr / rician-noise-nsr: noise-to-signal "
        "RMS ratio) and are evaluated on their own grids. The default ensemble: APGD on soft Dice and on DLR, "
        "CosPGD, SegPGD, same-budget noise as a baseline, and their worst case"
    )


@dataclass(frozen=True)
class EvalConfig:
    """Which attacks at which budgets, on which cases, and what to write."""

    attacks: list[str] = setting(
        [*(f"{kind}-l2" for kind in ENSEMBLE_MEMBERS), "worst-l2"],
        _attacks_help,
    )
    eps: list[float] = setting(
        [0.0, 0.125, 0.25, 0.5, 1.0, 2.0], "L2 budgets in model-input units (L2 over a whole slice, or volume for 3D)"
    )
    eps_unit: str = setting(
        "l2",
        "unit of the L2 budgets: l2 (norm over the whole sample, model-input units) or rms (per-voxel RMS, so "
        "budgets compare across image sizes and 2D / 3D: eps_l2 = eps * sqrt(voxels of the sample))",
        choices=("l2", "rms"),
    )
    eps_linf: list[float] = setting([0.0, 0.5 / 255, 1 / 255, 2 / 255, 4 / 255], "Linf budgets in model-input units")
    steps: int = setting(20, "PGD steps")
    restarts: int = setting(1, "PGD random restarts (per-sample worst kept)")
    losses: list[str] = setting(
        ["ce", "dice"], "losses of pgd-* (ce, dice, dice-ce, dlr, ...): several -> their worst by global Dice"
    )
    seed: int = setting(0, "attack seed")
    split: str = setting("test", "cases to evaluate: test, val, train or all (of the run's fold)")
    checkpoint: str = setting("last", "last, best, or a checkpoint path")
    batch_size: int = setting(32, "slices per attack batch (2D)")
    clip_range: tuple[float, float] | None = setting(
        None, "valid input range lo,hi for attacks (default: the run's training setting)", metavar="LO,HI"
    )
    postprocess: str = setting(
        "none",
        POSTPROCESS_HELP + ". Applied to the clean and every attacked prediction before Dice and HD95; recorded in "
        "summary.json (settings.postprocess). With the default --tag it evaluates into RUN/eval/default-POSTPROCESS, "
        "beside the raw evaluation",
        choices=tuple(POSTPROCESSORS),
    )
    hd95: bool = setting(True, "also compute HD95 (MONAI, in mm of the preprocessed grid)")
    steps_check: bool = setting(
        True, "sanity check: rerun the strongest single attack at 2x steps on a few cases at the headline budget"
    )
    gradient_free_check: bool = setting(
        True,
        "sanity check (gradient masking): random search (square-NORM) on a few cases at the headline budget must "
        "not end below the gradient attacks",
    )
    transfer_check: bool = setting(
        True,
        "sanity check (gradient masking): the default ensemble crafted on the run's initialisation checkpoint "
        "(train.init; skipped without one) must not beat the white-box attacks at the headline budget",
    )
    save_predictions: bool = setting(
        False, "write clean / attacked predictions and perturbations as NIfTI in source geometry"
    )
    overlays: int = setting(2, "cases with image / prediction / perturbation / flip-radius overlays for the report")
    roi_size: list[int] | None = setting(None, "3D: sliding-window size (default: the training spatial size)")
    device: str = setting("auto", "auto, cpu, cuda")
    amp: bool = setting(False, "bf16 autocast for the forward passes")
    tag: str = setting(
        DEFAULT_TAG,
        "name of the evaluation folder RUN/eval/TAG (default: default, or default-POSTPROCESS with a --postprocess "
        "other than none)",
    )
    allow_training_cases: bool = setting(
        False,
        "with --cache / --data: allow cases the run trained on (refused by default: such numbers are not held out)",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_range", parse_clip_range(self.clip_range))
        postprocess = check_choice("postprocess", self.postprocess, POSTPROCESSORS)
        object.__setattr__(self, "postprocess", postprocess)
        if postprocess != "none" and self.tag == DEFAULT_TAG:  # never over the raw evaluation's cells and summary
            object.__setattr__(self, "tag", f"{DEFAULT_TAG}-{postprocess}")
