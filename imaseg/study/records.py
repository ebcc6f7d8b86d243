"""A study's records file: every finished cell with its per-case counts, committed after every chunk.

::

    {
      "version": 1,
      "patients": {"patient001_frame01": "patient001", ...},   # case -> patient, from the cache manifest
      "fingerprints": {"std fold0 seed0": "3f2a...", ...},      # the settings each cell ran with
      "cells": {"std fold0 seed0": {"method": "std", "setting": "std", "fold": 0, "seed": 0, "epochs": 60,
                "cpu_minutes": 12.9, "clean": 0.74, "clean_ci": [...], "robust": {"0.25": ...},
                "robust_ci": {...}, "auc": 0.04, "run": "...", "counts": {"clean": {CASE: [[tp, fp, fn], ...]},
                "0.25": {...}}}, ...}
    }

``counts`` holds, per case and foreground class, the summed ``[tp, fp, fn]`` of the clean cell and of the
study's robust attack at each budget, so the report pools and bootstraps over patients without the run
folders. No torch here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaseg.utils.atomic import atomic_write_json

__all__ = ["RECORDS_VERSION", "StudyRecords"]

RECORDS_VERSION = 1


@dataclass
class StudyRecords:
    """The records of a study's finished cells (see the module docstring)."""

    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    patients: dict[str, str] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> StudyRecords:
        """The records at ``path`` (empty when there is no file yet).

        Raises:
            ValueError: not JSON, another version, or a file from before the study harness.
        """
        path = Path(path)
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(data, dict) or "version" not in data:
            raise ValueError(
                f"{path}: not a study records file (no `version`); records of benchmarks/frontier_acdc.py (a "
                "mapping of cell keys) convert once to {'version': 1, 'patients': {case: patient from the cache "
                "manifest}, 'fingerprints': {}, 'cells': <that mapping>}"
            )
        if data["version"] != RECORDS_VERSION:
            raise ValueError(f"{path}: records version {data['version']!r}; this imaseg reads {RECORDS_VERSION}")
        for key in ("cells", "patients", "fingerprints"):
            if not isinstance(data.get(key, {}), dict):
                raise ValueError(f"{path}: `{key}` must be a mapping, got {type(data[key]).__name__}; restore the file "
                                 "from git (records are committed after every chunk)")  # fmt: skip
        for key, cell in data.get("cells", {}).items():
            if not isinstance(cell, dict) or not isinstance(cell.get("counts"), dict):
                raise ValueError(f"{path}: cell {key!r} has no `counts` mapping; restore the file from git, or "
                                 "delete the cell to run it again")  # fmt: skip
        records = cls(dict(data.get("cells", {})), dict(data.get("patients", {})), dict(data.get("fingerprints", {})))
        missing = sorted(
            {c for r in records.cells.values() for k in r["counts"].values() for c in k} - set(records.patients)
        )
        if missing:
            raise ValueError(f"{path}: cases {missing[:5]} (of {len(missing)}) have no patient in `patients`")
        return records

    def save(self, path: str | os.PathLike[str]) -> Path:
        data = {"version": RECORDS_VERSION, "patients": self.patients, "fingerprints": self.fingerprints}
        return atomic_write_json(path, {**data, "cells": self.cells})

    def is_done(self, key: str, fingerprint: str) -> bool:
        """Whether ``key`` finished with the settings ``fingerprint`` stands for."""
        return key in self.cells and self.fingerprints.get(key) == fingerprint

    def add(self, key: str, record: Mapping[str, Any], fingerprint: str, patients: Mapping[str, str]) -> None:
        """Store a finished cell (replacing an earlier record of it) and the patients of its cases.

        Raises:
            ValueError: a case's patient differs from the one recorded before (the data's grouping changed:
                start a new records file).
        """
        changed = sorted(c for c, p in patients.items() if self.patients.get(c, p) != p)
        if changed:
            raise ValueError(
                f"cell {key!r}: cases {changed[:5]} belong to other patients than in the records; the data's "
                "grouping changed, so earlier cells are not comparable: start a new records file"
            )
        self.patients.update(patients)
        self.cells[key] = dict(record)
        self.fingerprints[key] = fingerprint

    def records(self) -> list[dict[str, Any]]:
        """The finished cells' records, in the order they were added."""
        return list(self.cells.values())
