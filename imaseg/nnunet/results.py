"""An nnU-Net v2 results folder: its plans, dataset description, folds and checkpoints (files only, no torch).

nnU-Net writes ``$nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION/`` with ``plans.json``,
``dataset.json`` and one ``fold_F/`` per trained fold (``fold_0`` ... ``fold_4``, or ``fold_all``) holding
``checkpoint_final.pth`` (written at the end of training) and ``checkpoint_best.pth`` (best EMA pseudo-Dice).
:func:`open_results` checks that the files are there and says which one is missing and how to get it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imaseg.data.errors import DataError

__all__ = ["CHECKPOINTS", "NnUNetResults", "checkpoint_name", "default_fold", "is_results_folder", "open_results"]

CHECKPOINTS = {"final": "checkpoint_final.pth", "last": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
_FOLD_PREFIX = "fold_"


@dataclass(frozen=True)
class NnUNetResults:
    """The files of one fold of a results folder (checked to exist by :func:`open_results`)."""

    folder: Path
    fold: str  # "0" ... "4" or "all"
    checkpoint: Path
    plans: dict[str, Any]
    dataset_json: dict[str, Any]

    @property
    def name_parts(self) -> tuple[str, str, str]:
        """``(trainer, plans, configuration)`` as the folder's name spells them (``?`` where it does not)."""
        parts = self.folder.name.split("__")
        return (parts[0], parts[1], parts[2]) if len(parts) == 3 else ("?", "?", "?")

    @property
    def dataset_name(self) -> str:
        return str(self.plans.get("dataset_name") or self.folder.parent.name)

    def describe(self) -> str:
        """One line for logs and the report: ``Dataset999_Tiny nnUNetTrainer__nnUNetPlans__2d fold 0 (final)``."""
        return f"{self.dataset_name} {self.folder.name} fold {self.fold} ({self.checkpoint.name})"


def _read_json(path: Path, fix: str) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: missing; {fix}", [path])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error}); {fix}", [path]) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: must be a JSON object, got {type(data).__name__}; {fix}", [path])
    return data


def is_results_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like an nnU-Net results folder (``plans.json``, ``dataset.json``, a ``fold_*``)."""
    folder = Path(path)
    return (
        folder.is_dir()
        and (folder / "plans.json").is_file()
        and (folder / "dataset.json").is_file()
        and any(p.is_dir() and p.name.startswith(_FOLD_PREFIX) for p in folder.iterdir())
    )


def _folds(folder: Path) -> list[str]:
    return sorted(
        p.name[len(_FOLD_PREFIX) :] for p in folder.iterdir() if p.is_dir() and p.name.startswith(_FOLD_PREFIX)
    )


def default_fold(folder: str | os.PathLike[str]) -> str:
    """The fold scored when none is named: the only ``fold_*`` folder, else ``0`` (else ``all``).

    Raises:
        DataError: no fold folder at all, or several without ``fold_0`` / ``fold_all``.
    """
    folder = Path(folder)
    folds = _folds(folder) if folder.is_dir() else []
    if len(folds) == 1:
        return folds[0]
    for fold in ("0", "all"):
        if fold in folds:
            return fold
    raise DataError(
        f"{folder}: {'no fold_F folder' if not folds else 'folds ' + ', '.join(folds)}; name the fold to score "
        "(--fold F), or train one with `nnUNetv2_train DATASET CONFIGURATION FOLD`",
        [folder],
    )


def checkpoint_name(checkpoint: str) -> str:
    """``final`` / ``last`` -> ``checkpoint_final.pth``, ``best`` -> ``checkpoint_best.pth``; a ``.pth`` name as is.

    >>> checkpoint_name("best"), checkpoint_name("checkpoint_latest.pth")
    ('checkpoint_best.pth', 'checkpoint_latest.pth')
    """
    if checkpoint in CHECKPOINTS:
        return CHECKPOINTS[checkpoint]
    if checkpoint.endswith(".pth") and "/" not in checkpoint and "\\" not in checkpoint:
        return checkpoint
    raise ValueError(f"`checkpoint` must be final, best or a checkpoint file name (*.pth), got {checkpoint!r}")


def open_results(
    folder: str | os.PathLike[str], fold: str | int | None = None, checkpoint: str = "final"
) -> NnUNetResults:
    """Check and read a results folder's plans, dataset description and the checkpoint of ``fold``.

    Raises:
        DataError: a missing or unreadable file (naming it and how to make it).
        ValueError: a checkpoint name that is not final, best or ``*.pth``.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such nnU-Net results folder (expected $nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIG)",
            [folder],
        )
    copied = "nnU-Net copies it there when training starts: point at the TRAINER__PLANS__CONFIG folder"
    plans = _read_json(folder / "plans.json", copied)
    dataset_json = _read_json(folder / "dataset.json", copied)
    fold = default_fold(folder) if fold is None else str(fold)
    fold_dir = folder / f"{_FOLD_PREFIX}{fold}"
    name = checkpoint_name(checkpoint)
    path = fold_dir / name
    if not fold_dir.is_dir():
        there = _folds(folder)
        raise DataError(
            f"{path}: fold {fold} was not trained here (folds: {', '.join(there) or 'none'}); train it with "
            f"`nnUNetv2_train DATASET CONFIGURATION {fold}` or pass --fold {there[0] if there else 'F'}",
            [path],
        )
    if not path.is_file():
        fix = (
            "training did not finish (nnU-Net writes it after the last epoch): finish it with `nnUNetv2_train ... --c`, "
            "or score --checkpoint best"
            if name == CHECKPOINTS["final"]
            else "nnU-Net writes it when the validation pseudo-Dice improves: score --checkpoint final instead"
        )
        raise DataError(f"{path}: missing; {fix}", [path])
    return NnUNetResults(folder, fold, path, plans, dataset_json)
