"""Prediction settings; every field is also an ``imaseg predict`` flag."""

from __future__ import annotations

from dataclasses import dataclass

from imaseg.config import setting
from imaseg.postprocess import POSTPROCESS_HELP, POSTPROCESSORS
from imaseg.utils.checks import check_choice

__all__ = ["PredictConfig"]


def _attack_help() -> str:
    from imaseg.attacks.registry import attack_kinds

    kinds = ", ".join(f"{kind}-l2" for kind in attack_kinds(records_flips=True))
    return f"attack walked for the robustness map (one that records flips: {kinds})"


@dataclass(frozen=True)
class PredictConfig:
    """How to segment new images with a trained run, and whether to map each voxel's robustness."""

    checkpoint: str = setting("last", "last, best, or a checkpoint path")
    robustness_map: float | None = setting(
        None,
        "also write CASE_flip_radius.nii.gz: per voxel, the L2 norm of the perturbation (model-input units, over "
        "the whole 2D slice or 3D volume) at which its predicted class first flipped along the attack path, up "
        "to this budget. It is an upper bound on the voxel's true robustness radius (a stronger or longer attack "
        "may flip it sooner); voxels that never flip, and voxels outside the model's field of view, hold the "
        "budget itself (read: at least this robust)",
    )
    postprocess: str = setting(
        "none",
        POSTPROCESS_HELP + ". Applied on the model's grid before the label map is mapped back to the input's "
        "geometry, so CASE.nii.gz and the volumes are of the post-processed mask (the robustness map stays that of "
        "the raw prediction)",
        choices=tuple(POSTPROCESSORS),
    )
    attack: str = setting("pgd-l2", _attack_help)
    steps: int = setting(20, "steps of the robustness-map attack")
    seed: int = setting(0, "seed of the robustness-map attack's random start")
    batch_size: int = setting(16, "2D: slices per network call")
    device: str = setting("auto", "auto, cpu, cuda")
    overwrite: bool = setting(False, "replace the outputs of another run or other settings in --output")

    def __post_init__(self) -> None:
        object.__setattr__(self, "postprocess", check_choice("postprocess", self.postprocess, POSTPROCESSORS))
