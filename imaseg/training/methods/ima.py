"""IMA training (see :mod:`imaseg.losses.ima`): per-sample margins kept in buffers, written to ``RUN/margins.json``.

``margins.json`` holds, per epoch, the margin statistics, every sample's margin and (voxel mode) the
per-class flip statistics; it is rewritten atomically after every epoch and cut back to the resumed
epoch when a run resumes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from imaseg.losses import IMALoss
from imaseg.run import RunDir
from imaseg.training.methods.registry import LossLogs, Method, register_method
from imaseg.utils.atomic import atomic_write_json

if TYPE_CHECKING:
    from imaseg.training.config import TrainConfig

__all__ = ["IMAMethod"]

MARGINS_FILE = RunDir.MARGINS


@register_method("ima")
class IMAMethod(Method):
    """IMA; the margins are buffers of ``self.ima.bank`` (so every checkpoint carries them)."""

    order = 30

    adversarial = True
    citation = "IMA: Ma & Liang, arXiv 2005.09147 / CMPB 2023"
    run_files = (MARGINS_FILE,)
    needs_sample_ids = True

    def __init__(self, config: TrainConfig, joint_forward: bool, sample_ids: Sequence[str], num_classes: int) -> None:
        super().__init__(config, joint_forward, sample_ids, num_classes)
        self.ima = IMALoss(
            sample_ids, config.ima, clip_range=self.clip_range, num_classes=num_classes, autocast_dtype=self.autocast
        )
        self.history: list[dict] = []

    @classmethod
    def label(cls, config: TrainConfig) -> str:
        floor = f", margins >= {config.ima.eps_min:g}" if config.ima.eps_min else ""
        threat = "" if config.ima.threat == "pgd" else f", {config.ima.threat}"
        return f"IMA ({config.ima.margin}{threat}{floor})"

    @classmethod
    def settings_text(cls, config: TrainConfig) -> str:
        floor = f", eps_min {config.ima.eps_min}" if config.ima.eps_min else ""
        threat = "" if config.ima.threat == "pgd" else f"{config.ima.threat} margins, "
        return f"{threat}delta {config.ima.delta}, eps_max {config.ima.eps_max}{floor}, tau {config.ima.tau}, {config.ima.steps} steps"

    def loss(
        self,
        model: nn.Module,
        network: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, LossLogs]:
        return self.ima(
            model, images, labels, index, generator=generator, network=network, joint_forward=self.joint_forward
        )

    def end_epoch(self) -> dict[str, float]:
        self.last_update = self.ima.bank.end_epoch()  # margin statistics and movement, also kept in margins.json
        return self.last_update

    def resume(self, run: Path, epoch: int) -> None:
        path = RunDir(run).margins_path
        if epoch == 0 or not path.is_file():
            self.history = []
            return
        self.history = [e for e in json.loads(path.read_text())["epochs"] if e["epoch"] <= epoch]

    def write_epoch(self, run: Path, epoch: int, class_names: dict[int, str]) -> None:
        ima = self.ima
        update = getattr(self, "last_update", None) or ima.bank.statistics()
        record = {"epoch": epoch, **update, "margins": ima.bank.margins.cpu().tolist()}
        if ima.margin == "voxel":
            record["voxels"] = ima.voxel_stats.summary(class_names)
        self.history.append(record)
        atomic_write_json(
            RunDir(run).margins_path,
            {
                "sample_ids": ima.bank.sample_ids,
                "delta": ima.bank.delta,
                "eps_max": ima.bank.eps_max,
                "eps_min": ima.bank.eps_min,
                "threat": ima.settings.threat,
                "epochs": self.history,
            },
        )

    def reset_epoch(self) -> None:
        self.ima.voxel_stats.reset()

    def statistics(self) -> dict[str, float]:
        return self.ima.bank.statistics()
