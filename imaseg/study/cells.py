"""A study's cells: configuration x folds x seeds, each with its resolved settings and fingerprint.

A cell is one ``imaseg train`` + ``imaseg evaluate`` run folder, ``WORK/fold{F}/seed{S}/{slug}``. Its
fingerprint hashes the settings the study states (not the library's defaults, so options added to imaseg
later keep finished cells), and the fingerprint of the cell it starts from: a retrained STD makes every
fine-tune of it stale. No torch here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imaseg.config import merge_mappings
from imaseg.study.declaration import Configuration, Study

__all__ = [
    "StudyCell",
    "cache_folder",
    "cell_fingerprints",
    "eval_settings",
    "expand_cells",
    "slug",
    "train_settings",
]


def cache_folder(work: Path) -> Path:
    """The study's cache: its data preprocessed once, shared by every cell."""
    return work / "cache"


def slug(name: str) -> str:
    """A configuration name as a folder name.

    >>> slug("pgd-at eps 0.5")
    'pgd-at-eps-0p5'
    """
    return name.replace(" ", "-").replace(".", "p")


@dataclass(frozen=True)
class StudyCell:
    """One configuration on one fold with one seed."""

    configuration: Configuration
    fold: int
    seed: int

    @property
    def name(self) -> str:
        return self.configuration.name

    @property
    def key(self) -> str:
        """The cell's key in the records file, e.g. ``"pgd-at eps 1 fold0 seed0"``."""
        return f"{self.name} fold{self.fold} seed{self.seed}"

    @property
    def init_key(self) -> str | None:
        init = self.configuration.init
        return None if init is None else f"{init} fold{self.fold} seed{self.seed}"

    def folder(self, work: Path) -> Path:
        """The cell's run folder under the study's work folder."""
        return work / f"fold{self.fold}" / f"seed{self.seed}" / slug(self.name)

    def init_folder(self, work: Path) -> Path | None:
        init = self.configuration.init
        return None if init is None else work / f"fold{self.fold}" / f"seed{self.seed}" / slug(init)


def train_settings(study: Study, cell: StudyCell) -> dict[str, Any]:
    """The training settings the study states for ``cell`` (without the ``init`` checkpoint path)."""
    configuration = cell.configuration
    settings = merge_mappings(study.train, study.recipes.get(configuration.recipe or "", {}))
    settings = merge_mappings(settings, configuration.train)
    return {**settings, "method": configuration.method, "fold": cell.fold, "seed": cell.seed}


def eval_settings(study: Study, cell: StudyCell) -> dict[str, Any]:
    """The evaluation settings of ``cell``: the study's, its configuration's, and the cell's seed."""
    return {**merge_mappings(study.evaluate, cell.configuration.evaluate), "seed": cell.seed}


def _ordered(study: Study, names: Iterable[str]) -> list[Configuration]:
    """``names`` and the configurations they start from, in declaration order with every source first."""
    wanted: set[str] = set()
    for name in names:
        current: str | None = name
        while current is not None and current not in wanted:
            wanted.add(current)
            current = study.configuration(current).init
    ordered: list[Configuration] = []
    pending = [c for c in study.configurations if c.name in wanted]
    while pending:
        ready = [c for c in pending if c.init is None or c.init in {o.name for o in ordered}]
        ordered += ready
        pending = [c for c in pending if c not in ready]
    return ordered


def expand_cells(
    study: Study,
    *,
    only: Iterable[str] | None = None,
    folds: Iterable[int] | None = None,
    seeds: Iterable[int] | None = None,
) -> list[StudyCell]:
    """The cells to run, seed by seed and fold by fold, every cell after the one it starts from.

    Args:
        only: configuration names (default: all); the cells they start from (same fold and seed) are added.
        folds: folds instead of the study's; a configuration with its own ``folds`` keeps only those in both.
        seeds: seeds instead of the study's (likewise).

    Raises:
        ValueError: ``only`` names a configuration the study does not declare.
    """
    names = list(only) if only is not None else study.names()
    unknown = [n for n in names if n not in study.names()]
    if unknown:
        raise ValueError(f"unknown configurations {unknown}; {study.source.name} declares {study.names()}")
    fold_list = list(folds) if folds is not None else list(study.folds)
    seed_list = list(seeds) if seeds is not None else list(study.seeds)
    wanted: set[tuple[str, int, int]] = set()
    for name in names:
        configuration = study.configuration(name)
        for seed in seed_list:
            for fold in fold_list:
                if fold in (configuration.folds or fold_list) and seed in (configuration.seeds or seed_list):
                    wanted.add((name, fold, seed))
    for name, fold, seed in list(wanted):  # the cells they start from, on the same fold with the same seed
        source = study.configuration(name).init
        while source is not None:
            wanted.add((source, fold, seed))
            source = study.configuration(source).init
    ordered = _ordered(study, names)
    return [
        StudyCell(configuration, fold, seed)
        for seed in seed_list
        for fold in fold_list
        for configuration in ordered
        if (configuration.name, fold, seed) in wanted
    ]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cell_fingerprints(study: Study, cells: Iterable[StudyCell]) -> dict[str, str]:
    """Per cell key, the hash of its preprocessing, training and evaluation settings, its robust attack and
    the fingerprint of the cell it starts from (``cells`` in order: sources first)."""
    fingerprints: dict[str, str] = {}
    for cell in cells:
        source = fingerprints.get(cell.init_key) if cell.init_key else None
        if cell.init_key and source is None:
            raise ValueError(f"cell {cell.key!r} comes before {cell.init_key!r}, the cell it starts from")
        stated = {
            "preprocess": study.preprocess,
            "train": train_settings(study, cell),
            "init": source,
            "evaluate": eval_settings(study, cell),
            "robust_attack": study.robust_attack,
        }
        fingerprints[cell.key] = _digest(stated)
    return fingerprints
