"""The run folder: the one module that knows its layout and reads and writes its files.

A run folder is what ``imaseg train`` writes and every later stage reads::

    RUN/
      config.yaml           resolved settings: ``cache`` (the training cache), ``train``, ``method``
      preprocessing.json    how new images are prepared like the training data (no cache needed)
      split.json            the fold's train / validation / test cases
      checkpoints/last.pt   weights, optimiser, scheduler, epoch, RNG, method state (atomic)
      checkpoints/best.pt   the best validation epoch (absent without a validation side)
      log.csv, tb/          per-epoch losses, Dice, method statistics
      margins.json          method state a method writes (IMA's margins): ``RunDir.state_file(name)``
      train.lock            while ``imaseg train`` runs: its pid, host and command (one trainer per folder)
      eval/TAG/             one evaluation: :class:`EvalDir`

Nothing else spells these names: stages ask :class:`RunDir` / :class:`EvalDir` for a path or a record.
This module imports no torch, so the report layer reads runs through it too.

>>> run = RunDir("runs/std")
>>> run.checkpoint("last").as_posix(), run.evaluation("default").summary_path.as_posix()
('runs/std/checkpoints/last.pt', 'runs/std/eval/default/summary.json')
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from imaseg.config import load_yaml, save_config
from imaseg.data.errors import DataError
from imaseg.summary import Summary
from imaseg.utils.atomic import atomic_write_json
from imaseg.utils.lock import FolderLock

__all__ = ["CHECKPOINT_NAMES", "EvalDir", "RunDir", "parse_clip_range"]

CHECKPOINT_NAMES = ("last", "best")


def parse_clip_range(value: Any, *, source: str = "clip_range") -> tuple[float, float] | None:
    """The one conversion of a stored or configured clip range: ``None`` / ``[lo, hi]`` -> ``(lo, hi)``.

    >>> parse_clip_range([0, 1]), parse_clip_range(None)
    ((0.0, 1.0), None)
    """
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"`{source}` must be two numbers [low, high], got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not low < high:
        raise ValueError(f"`{source}` must have low < high, got {value!r}")
    return low, high


class EvalDir:
    """``RUN/eval/TAG/``: one evaluation's files (see :mod:`imaseg.evaluation.evaluate`)."""

    SETTINGS = "settings.yaml"
    RESULTS = "results.csv"
    SUMMARY = "summary.json"
    WORST_MEMBERS = "worst_members.csv"
    ENDPOINTS = "endpoints.csv"
    CELLS = "cells"
    OVERLAYS = "overlays"
    PREDICTIONS = "predictions"
    CACHE = "cache"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"EvalDir({str(self.path)!r})"

    @property
    def tag(self) -> str:
        return self.path.name

    @property
    def settings_path(self) -> Path:
        return self.path / self.SETTINGS

    @property
    def results_path(self) -> Path:
        return self.path / self.RESULTS

    @property
    def summary_path(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def worst_members_path(self) -> Path:
        return self.path / self.WORST_MEMBERS

    @property
    def endpoints_path(self) -> Path:
        return self.path / self.ENDPOINTS

    @property
    def cells_dir(self) -> Path:
        return self.path / self.CELLS

    @property
    def overlays_dir(self) -> Path:
        return self.path / self.OVERLAYS

    @property
    def predictions_dir(self) -> Path:
        return self.path / self.PREDICTIONS

    @property
    def cache_dir(self) -> Path:
        """Where ``imaseg evaluate --data`` keeps the new data preprocessed like the run's."""
        return self.path / self.CACHE

    def cell_path(self, key: str, suffix: str = ".json") -> Path:
        """One cell's record (``.json``) or predictions (``.npz``)."""
        return self.cells_dir / f"{key}{suffix}"

    def has_summary(self) -> bool:
        return self.summary_path.is_file()

    def read_summary_json(self) -> dict:
        """The raw ``summary.json`` (see :class:`imaseg.summary.Summary` for the typed view)."""
        return _read_json(self.summary_path, "rerun `imaseg evaluate`")

    def read_summary(self) -> Summary:
        """``summary.json`` as a typed :class:`~imaseg.summary.Summary`."""
        return Summary.read(self.summary_path)

    def write_summary(self, summary: Summary) -> Path:
        """Write ``summary.json`` atomically (NaN as ``null``)."""
        return atomic_write_json(self.summary_path, summary.to_json())

    def read_results(self) -> list[dict[str, str]]:
        """``results.csv`` as rows of strings (empty when absent)."""
        return _read_csv(self.results_path)

    def read_cell(self, key: str) -> dict:
        """One finished cell's per-case record."""
        return _read_json(self.cell_path(key), "rerun `imaseg evaluate` to recompute it")


class RunDir:
    """A run folder: its paths and its records (see the module docstring for the layout)."""

    CONFIG = "config.yaml"
    PREPROCESSING = "preprocessing.json"
    SPLIT = "split.json"
    LOG = "log.csv"
    CHECKPOINTS = "checkpoints"
    TENSORBOARD = "tb"
    EVAL = "eval"
    MARGINS = "margins.json"
    LOCK = "train.lock"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name

    # -- paths ------------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / self.CONFIG

    @property
    def preprocessing_path(self) -> Path:
        return self.path / self.PREPROCESSING

    @property
    def split_path(self) -> Path:
        return self.path / self.SPLIT

    @property
    def log_path(self) -> Path:
        return self.path / self.LOG

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def margins_path(self) -> Path:
        return self.state_file(self.MARGINS)

    @property
    def lock_path(self) -> Path:
        """The lock file ``imaseg train`` holds while it writes here (owner's pid, host and command)."""
        return self.path / self.LOCK

    def training_lock(self, *, enabled: bool = True) -> FolderLock:
        """The claim of one training process on this folder (see :mod:`imaseg.utils.lock`)."""
        return FolderLock(self.lock_path, "run folder", enabled=enabled)

    def state_file(self, name: str) -> Path:
        """A file a training method keeps in the run folder (``Method.run_files``)."""
        if Path(name).name != name:
            raise ValueError(f"a method's run file must be a plain file name, got {name!r}")
        return self.path / name

    def checkpoint(self, which: str = "last") -> Path:
        """``last`` / ``best`` (``best`` falls back to ``last`` for runs without a validation side) or a path.

        >>> RunDir("r").checkpoint("best").as_posix()  # no best.pt here: the last one
        'r/checkpoints/last.pt'
        """
        if which not in CHECKPOINT_NAMES:
            return Path(which)
        path = self.checkpoints_dir / f"{which}.pt"
        if which == "best" and not path.is_file():
            path = self.checkpoints_dir / "last.pt"
        return path

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints_dir / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints_dir / "best.pt"

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike[str]) -> RunDir:
        """The run a checkpoint of it belongs to (``RUN/checkpoints/last.pt`` -> ``RUN``)."""
        return cls(Path(checkpoint).parent.parent)

    def evaluation(self, tag: str = "default") -> EvalDir:
        """``RUN/eval/TAG``; the tag must be a plain folder name."""
        if not re.fullmatch(r"[\w.+-]+", tag) or set(tag) == {"."}:
            raise ValueError(f"`tag` must be a plain folder name (letters, digits, . _ + -), got {tag!r}")
        return EvalDir(self.path / self.EVAL / tag)

    def evaluation_tags(self) -> list[str]:
        """Tags of the evaluations that finished (wrote a summary)."""
        root = self.path / self.EVAL
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / EvalDir.SUMMARY).is_file())

    # -- records ----------------------------------------------------------------------------------------
    def is_run(self) -> bool:
        return self.config_path.is_file()

    def require(self) -> RunDir:
        """This run, or a :class:`FileNotFoundError` naming what a run folder holds."""
        if not self.is_run():
            raise FileNotFoundError(
                f"{self.path} is not a run folder (no {self.CONFIG}); pass a folder written by `imaseg train`"
            )
        return self

    def read_config(self) -> dict:
        """``config.yaml`` as a mapping (empty when absent)."""
        return load_yaml(self.config_path) if self.config_path.is_file() else {}

    def write_config(self, sections: Mapping[str, Any]) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        return save_config(self.config_path, sections)

    def train_settings(self) -> dict:
        """The ``train`` section of ``config.yaml``.

        Raises:
            FileNotFoundError: no ``config.yaml`` (not a run folder).
        """
        if not self.config_path.is_file():
            raise FileNotFoundError(
                f"{self.config_path} does not exist: is {self.path} a run folder written by `imaseg train`?"
            )
        train = self.read_config().get("train", {})
        if not isinstance(train, dict):
            raise ValueError(f"{self.config_path}: its 'train' section must be a mapping")
        return train

    def cache_hint(self) -> str | None:
        """The training cache ``config.yaml`` names (it may have moved or gone)."""
        if not self.config_path.is_file():
            raise DataError(
                f"{self.path}: no {self.CONFIG}; is this a run folder written by `imaseg train`?", [self.path]
            )
        value = self.read_config().get("cache")
        return str(value) if value else None

    def read_preprocessing(self) -> dict | None:
        """``preprocessing.json``, or ``None`` for runs written before it existed."""
        if not self.preprocessing_path.is_file():
            return None
        return _read_json(self.preprocessing_path, "restore it from a copy of the run")

    def write_preprocessing(self, record: Any) -> Path:
        """Write ``preprocessing.json`` from a mapping or a record with ``to_json()``."""
        data = record.to_json() if hasattr(record, "to_json") else dict(record)
        return atomic_write_json(self.preprocessing_path, data)

    def read_split(self) -> dict:
        """``split.json`` (empty when absent: a run of a model imaseg did not train)."""
        return _read_json(self.split_path, "retrain the run") if self.split_path.is_file() else {}

    def write_split(self, split: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.split_path, dict(split))

    def trained_cases(self) -> set[str]:
        return {str(c) for c in self.read_split().get("train", [])}

    def read_log(self) -> list[dict[str, str]]:
        """``log.csv`` as rows of strings (empty when absent)."""
        return _read_csv(self.log_path)

    def read_margins(self) -> dict | None:
        """IMA's ``margins.json`` (``None`` for other methods)."""
        return _read_json(self.margins_path, "retrain the run") if self.margins_path.is_file() else None

    def clear_training(self, method_files: Iterable[str] = ()) -> None:
        """Remove what a training wrote (checkpoints, logs, method state) before ``train --overwrite``."""
        for folder in (self.checkpoints_dir, self.tensorboard_dir):
            shutil.rmtree(folder, ignore_errors=True)
        for name in (self.LOG, *method_files):
            self.state_file(name).unlink(missing_ok=True)


def _read_json(path: Path, fix: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {fix}", [path]) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not valid JSON ({error}); {fix}", [path]) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}; {fix}", [path])
    return data


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [dict(row) for row in csv.DictReader(handle)]
