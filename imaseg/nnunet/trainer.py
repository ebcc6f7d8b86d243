"""Robust training inside nnU-Net v2: trainer classes for PGD-AT, TRADES and IMA (sample and voxel mode).

Each class is an ``nnUNetTrainer`` whose ``train_step`` computes the loss of a
:class:`~imaseg.nnunet.robust_steps.RobustStep` (imaseg's attacks, losses and margin bank) and keeps everything
else nnU-Net's: plans, data augmentation, deep supervision, optimiser and schedule, validation, the
checkpoints (which also carry the step's state under ``"imaseg"``: IMA's margins keyed by case identifier)
and the results folder, which ``imaseg evaluate --nnunet`` then scores.

Started with nnU-Net's own command once nnU-Net can find the classes (README, "nnU-Net")::

    nnUNetv2_train DATASET 2d FOLD -tr nnUNetTrainerPGDAT

or with ``imaseg nnunet train DATASET 2d FOLD --method pgd-at --adversarial-eps 4`` (every setting a flag).
A variant with other settings is a subclass that changes :attr:`nnUNetTrainerRobust.robust_settings`.

Importing this module imports nnunetv2.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import autocast

from imaseg.config import to_dict
from imaseg.nnunet.robust_steps import RobustSettings, RobustStep, build_robust_step
from imaseg.utils.atomic import atomic_write_json

__all__ = [
    "STATE_KEY",
    "nnUNetTrainerIMA",
    "nnUNetTrainerIMAVoxel",
    "nnUNetTrainerPGDAT",
    "nnUNetTrainerRobust",
    "nnUNetTrainerTRADES",
]

logger = logging.getLogger(__name__)

STATE_KEY = "imaseg"
MARGINS_FILE = "imaseg_margins.json"
_CUDA = torch.device("cuda")  # nnU-Net's default device


class nnUNetTrainerRobust(nnUNetTrainer):  # noqa: N801 -- nnU-Net's naming
    """Base of imaseg's nnU-Net trainers; the class attribute ``robust_settings`` says what it trains (a subclass
    changes it; ``imaseg nnunet train`` makes such a subclass from its flags)."""

    robust_settings: ClassVar[RobustSettings] = RobustSettings(method="std")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device: torch.device = _CUDA):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.imaseg_settings = self.robust_settings
        self.robust_step: RobustStep | None = None
        self.iteration = 0
        self._epoch_logs: list[dict[str, float]] = []

    # ---- the step and its state --------------------------------------------------------------------
    def _check_labels(self) -> None:
        manager = self.label_manager
        if manager.has_regions or manager.ignore_label is not None:
            raise ValueError(
                f"{self.__class__.__name__}: region-based training and ignore labels are not supported (imaseg's attacks "
                "and losses take one class per voxel); train this dataset with nnUNetTrainer"
            )

    def _ensure_step(self) -> RobustStep:
        if self.robust_step is None:
            self._check_labels()
            train_cases, _ = self.do_split()
            heads = self.label_manager.num_segmentation_heads
            step = build_robust_step(self.imaseg_settings, sorted(train_cases), heads).to(self.device)
            if self.device.type == "cuda":  # nnU-Net's mixed precision, for the training forward only
                step.precision = lambda: autocast("cuda", enabled=True)
            self.robust_step = step
            self.print_to_log_file(f"imaseg robust training: {self.imaseg_settings}")
        return self.robust_step

    def on_train_start(self) -> None:
        super().on_train_start()
        self._ensure_step()

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint plus the step's state, written atomically (a crash leaves the previous file)."""
        if self.local_rank != 0 or self.disable_checkpointing:
            super().save_checkpoint(filename)
            return
        folder = os.path.dirname(os.path.abspath(filename))
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".pth.part")
        os.close(handle)
        try:
            super().save_checkpoint(temporary)
            checkpoint = torch.load(temporary, map_location="cpu", weights_only=False)
            step = self._ensure_step()
            checkpoint[STATE_KEY] = {
                "method": step.name,
                "settings": to_dict(self.imaseg_settings),
                "case_ids": step.case_ids,
                "state": {k: v.cpu() for k, v in step.state_dict().items() if isinstance(v, torch.Tensor)},
            }
            torch.save(checkpoint, temporary)
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would differ from nnU-Net's own checkpoints
            os.replace(temporary, filename)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def load_checkpoint(self, filename_or_checkpoint: dict | str) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = filename_or_checkpoint
        if isinstance(checkpoint, str):
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=False)
        step = self._ensure_step()
        self.iteration = self.current_epoch * self.num_iterations_per_epoch  # the attack seeds continue
        saved = checkpoint.get(STATE_KEY)
        if saved is None:
            logger.warning("the checkpoint holds no imaseg state (an nnUNetTrainer checkpoint?): margins start afresh")
            return
        settings = to_dict(self.imaseg_settings)
        if saved.get("settings", settings) != settings or list(saved["case_ids"]) != step.case_ids:
            raise ValueError(
                f"the checkpoint was trained with other settings ({saved.get('settings', saved['method'])}) or on other "
                "cases; continue it with the trainer and settings that wrote it and the same splits_final.json"
            )
        step.load_state_dict(saved["state"], strict=False)

    # ---- training ------------------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict:
        step = self._ensure_step()
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = (
            [t.to(self.device, non_blocking=True) for t in target]
            if isinstance(target, list)
            else target.to(self.device)
        )
        keys = [str(k) for k in batch["keys"]]
        seed = (self.imaseg_settings.seed * 1_000_003 + self.iteration) * 64 + self.local_rank  # ranks differ
        generator = torch.Generator(device=self.device).manual_seed(seed)
        self.iteration += 1
        self.optimizer.zero_grad(set_to_none=True)
        loss, logs = step.loss(self.network, data, target, keys, self.current_epoch, generator, self.loss)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        self._epoch_logs.append(logs)
        return {"loss": loss.detach().cpu().numpy()}

    def on_epoch_end(self) -> None:
        """The step's epoch update (IMA's margins) before nnU-Net writes this epoch's checkpoints."""
        step = self._ensure_step()
        means = (
            {k: float(np.nanmean([log[k] for log in self._epoch_logs if k in log])) for k in self._epoch_logs[0]}
            if self._epoch_logs
            else {}
        )
        self._epoch_logs = []
        update = step.end_epoch()
        self.print_to_log_file("imaseg", {k: round(v, 4) for k, v in {**means, **update}.items()})
        if update and self.local_rank == 0:
            self._write_margins(step, update)
        super().on_epoch_end()

    def _write_margins(self, step: RobustStep, update: dict[str, float]) -> None:
        """``fold_F/imaseg_margins.json``: per epoch the margin statistics and every case's margin."""
        path = Path(self.output_folder) / MARGINS_FILE
        epochs: list[dict[str, Any]] = []
        if path.is_file():  # a resumed run: keep the epochs before this one
            epochs = [e for e in json.loads(path.read_text())["epochs"] if e["epoch"] < self.current_epoch]
        epochs.append({"epoch": self.current_epoch, **update, "margins": step.margins()})
        atomic_write_json(path, {"case_ids": step.case_ids, "epochs": epochs})


class nnUNetTrainerPGDAT(nnUNetTrainerRobust):  # noqa: N801
    """PGD-AT at L2 eps 4 (nnU-Net's normalised units), 10 steps, adversarial weight 0.5."""

    robust_settings = RobustSettings.from_mapping({"method": "pgd-at", "adversarial": {"eps": 4.0}})


class nnUNetTrainerTRADES(nnUNetTrainerRobust):  # noqa: N801
    """TRADES at L2 eps 4, beta 6."""

    robust_settings = RobustSettings.from_mapping({"method": "trades", "adversarial": {"eps": 4.0}})


class nnUNetTrainerIMA(nnUNetTrainerRobust):  # noqa: N801
    """IMA, sample mode (the published algorithm): margins up to L2 8, delta 1, one per case, grown when more than
    half of the epoch's visits of the case survived (nnU-Net draws each case many times per epoch)."""

    robust_settings = RobustSettings.from_mapping(
        {"method": "ima", "ima": {"margin": "sample", "eps_max": 8.0, "delta": 1.0}}
    )


class nnUNetTrainerIMAVoxel(nnUNetTrainerRobust):  # noqa: N801
    """IMA, voxel mode (imaseg's): margins up to L2 8, delta 1, one per case, grown when more than half of the
    epoch's visits of the case survived."""

    robust_settings = RobustSettings.from_mapping(
        {"method": "ima", "ima": {"margin": "voxel", "eps_max": 8.0, "delta": 1.0}}
    )
