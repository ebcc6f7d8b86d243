"""Helpers of the evaluation tests (a module rather than conftest.py, so test modules can import them)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SMALL = {
    "attacks": ["pgd-l2", "noise-l2", "worst-l2"],
    "eps": [0.0, 0.5, 1.0],
    "steps": 2,
    "hd95": False,
    "steps_check": False,
    "gradient_free_check": False,  # the masking checks have their own tests (test_eval_masking.py)
    "transfer_check": False,
    "overlays": 1,
}


def small_config(**overrides):
    """A cheap EvalConfig: pgd-l2, noise-l2, worst-l2 at eps 0, 0.5, 1 with 2 steps, no HD95."""
    from imaseg.evaluation import EvalConfig

    return EvalConfig(**{**SMALL, **overrides})


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def numpy_dice(pred: np.ndarray, label: np.ndarray, num_classes: int) -> list[float]:
    """Per foreground class 2 tp / (|pred| + |label|) on whole arrays; NaN where the label lacks the class."""
    out = []
    for c in range(1, num_classes):
        p, t = pred == c, label == c
        out.append(2.0 * (p & t).sum() / (p.sum() + t.sum()) if t.any() else float("nan"))
    return out


@dataclass
class Evaluated:
    """An evaluated run: the folder, its ``eval/default`` output, the summary and the CSV rows."""

    run: Path
    out: Path
    summary: dict
    rows: list[dict]

    def cell(self, key: str) -> dict[str, np.ndarray]:
        with np.load(self.out / "cells" / f"{key}.npz") as data:
            return {k: data[k] for k in data.files}

    def record(self, key: str) -> dict:
        return json.loads((self.out / "cells" / f"{key}.json").read_text())
