"""Prediction settings; every field is also an ``imaseg predict`` flag."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PredictConfig"]


def _f(default, help_text: str, **extra):
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass(frozen=True)
class PredictConfig:
    """How to segment new images with a trained run, and whether to map each voxel's robustness."""

    checkpoint: str = _f("last", "last, best, or a checkpoint path")
    robustness_map: float | None = _f(
        None,
        "also write CASE_flip_radius.nii.gz: per voxel, the L2 norm of the perturbation (model-input units, over "
        "the whole 2D slice or 3D volume) at which its predicted class first flipped along the attack path, up "
        "to this budget. It is an upper bound on the voxel's true robustness radius (a stronger or longer attack "
        "may flip it sooner); voxels that never flip, and voxels outside the model's field of view, hold the "
        "budget itself (read: at least this robust)",
    )
    attack: str = _f(
        "pgd-l2", "attack walked for the robustness map (a kind that records flips: pgd-l2, apgd-dice-l2, ...)"
    )
    steps: int = _f(20, "steps of the robustness-map attack")
    seed: int = _f(0, "seed of the robustness-map attack's random start")
    batch_size: int = _f(16, "2D: slices per network call")
    device: str = _f("auto", "auto, cpu, cuda")
    overwrite: bool = _f(False, "replace the outputs of another run or other settings in --output")
