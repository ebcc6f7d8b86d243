"""A run folder for one fold of an nnU-Net v2 model (``imaseg evaluate --nnunet RESULTS --data DIR --run OUT``).

Like ``evaluate --model`` (:mod:`imaseg.evaluation.external`), ``OUT/config.yaml`` names the model instead
of a cache and checkpoint: its ``train.nnunet`` section holds the results folder, the fold, the checkpoint
and whether test-time mirroring is on. Evaluation then loads the network through
:func:`load_for_evaluation` (nnU-Net's sliding window and mirroring, differentiable), the data are
preprocessed by nnU-Net's own preprocessing (:func:`imaseg.nnunet.cache.preprocess_with_nnunet`), and
the CSV, summary, checks and report are imaseg's. :func:`imaseg.nnunet.reference.check_against_nnunet`
then compares the clean predictions with nnU-Net's own predictor and writes its masks in source geometry.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imaseg.data.errors import DataError
from imaseg.nnunet.history import write_nnunet_history
from imaseg.nnunet.requirement import require_nnunet
from imaseg.nnunet.results import checkpoint_name, open_results
from imaseg.run import RunDir, parse_clip_range

__all__ = [
    "NNUNET_KEY",
    "load_for_evaluation",
    "load_model_for_run",
    "nnunet_settings",
    "prepare_nnunet_run",
    "preprocess_for_run",
]

NNUNET_KEY = "nnunet"


def nnunet_settings(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's ``train.nnunet`` settings, or ``None`` for any other run (or no run yet)."""
    run = RunDir(run_dir)
    if not run.config_path.is_file():
        return None
    value = run.train_settings().get(NNUNET_KEY)
    return dict(value) if isinstance(value, dict) else None


def _refuse_other_model(run: RunDir, settings: dict[str, Any]) -> None:
    """Refuse to overwrite another run's config, or to score another model into a run's stored cells."""
    if not run.config_path.is_file():
        return
    previous = run.train_settings().get(NNUNET_KEY)
    if previous == settings or (previous is not None and not (run.path / "eval").is_dir()):
        return
    what = f"evaluations of the nnU-Net model {previous}" if previous is not None else "a run of another model"
    raise ValueError(
        f"{run.path} already holds {what}, not of {settings}; score into a new --run folder (stored cells are "
        "reused by folder, so they must come from one model and setting)"
    )


def prepare_nnunet_run(
    results: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    fold: str | int | None = None,
    checkpoint: str = "final",
    tta: bool = True,
    clip_range: Sequence[float] | None = None,
) -> Path:
    """Write ``run_dir/config.yaml`` and ``preprocessing.json`` for one fold of ``results``; returns the folder.

    Raises:
        DataError: missing plans, dataset.json, fold or checkpoint (naming the file and the fix).
        ValueError: ``run_dir`` already holds evaluations of another model or setting.
        NnUNetMissingError: nnunetv2 is not installed (before anything is written).
    """
    require_nnunet()
    checked = open_results(results, fold, checkpoint)
    settings = {
        "results": str(checked.folder),
        "fold": checked.fold,
        "checkpoint": checked.checkpoint.name,
        "tta": bool(tta),
    }
    run = RunDir(run_dir)
    _refuse_other_model(run, settings)
    trainer, plans, configuration = checked.name_parts
    mirroring = "mirroring TTA" if tta else "no TTA"
    sections = {
        "cache": None,
        "train": {"method": "external", NNUNET_KEY: settings, "clip_range": parse_clip_range(clip_range)},
        "method": {
            "name": "external",
            "label": f"nnU-Net {configuration} fold {checked.fold} ({mirroring})",
            "settings": f"nnU-Net v2 {checked.describe()}, trainer {trainer}, plans {plans}, {mirroring}",
        },
    }
    run.write_config(sections)
    run.write_preprocessing({"config": {NNUNET_KEY: settings}})
    write_nnunet_history(run.path, checked.checkpoint)
    return run.path


def _checkpoint(settings: dict[str, Any], option: str) -> str:
    """The run's checkpoint, unless evaluation asks for another (``--checkpoint final|best|NAME.pth``)."""
    return str(settings["checkpoint"]) if option == "last" else checkpoint_name(option)


def load_model_for_run(settings: dict[str, Any], checkpoint: str = "last", device: torch.device | str = "cpu"):
    """The :class:`~imaseg.nnunet.model.NnUNetModel` a run's ``train.nnunet`` settings name."""
    from imaseg.nnunet.model import load_model

    return load_model(settings["results"], settings["fold"], _checkpoint(settings, checkpoint), device)


def load_for_evaluation(
    settings: dict[str, Any],
    checkpoint: str = "last",
    device: torch.device | str = "cpu",
    *,
    num_classes: int | None = None,
) -> tuple[nn.Module, Path, int]:
    """``(forward module, checkpoint file, epoch)`` for evaluation: nnU-Net's window, mirroring if the run says.

    Raises:
        DataError: the model's classes are not the data's ``num_classes`` (a cache made for another model).
    """
    model = load_model_for_run(settings, checkpoint, device)
    if num_classes is not None and num_classes != model.num_classes:
        dataset = model.results.folder / "dataset.json"
        raise DataError(
            f"{dataset}: the model has {model.num_classes} classes, the data {num_classes}; evaluate data preprocessed "
            "for this model (--data DIR)",
            [dataset],
        )
    return model.forward_module(tta=bool(settings.get("tta", True))), model.results.checkpoint, model.epoch


def preprocess_for_run(
    run_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    progress: bool = False,
    allow_outside_paths: bool = False,
) -> str:
    """``data`` preprocessed by the run's nnU-Net model into the cache ``out``; returns ``out``.

    Raises:
        ValueError: ``run_dir`` scores no nnU-Net model.
    """
    from imaseg.nnunet.cache import preprocess_with_nnunet

    settings = nnunet_settings(run_dir)
    if settings is None:
        raise ValueError(f"{run_dir}: not a run of an nnU-Net model (no train.nnunet in its config.yaml)")
    model = load_model_for_run(settings)
    preprocess_with_nnunet(model, data, out, progress=progress, allow_outside_paths=allow_outside_paths)
    return str(out)
