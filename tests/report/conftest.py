"""Two evaluated runs (standard and IMA) and their report, built once for the report tests (read-only)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import tiny_train_config

EVAL = {
    "attacks": ["pgd-l2", "noise-l2", "worst-l2"],
    "eps": [0.0, 0.5, 1.0],
    "steps": 2,
    "steps_check": False,
    "overlays": 1,
}


@dataclass
class Report:
    runs: list[Path]
    html: Path
    md: Path


@pytest.fixture(scope="session")
def evaluated_runs(tiny_run, tiny_cache, tmp_path_factory) -> list[Path]:
    """``std``: a copy of tiny_run, evaluated with HD95; ``ima``: one IMA epoch from its weights, evaluated."""
    from imaseg.evaluation import EvalConfig, evaluate
    from imaseg.training.trainer import train

    root = tmp_path_factory.mktemp("report")
    std = root / "std"
    shutil.copytree(tiny_run, std, ignore=shutil.ignore_patterns("eval"))
    ima = root / "ima"
    train(
        tiny_cache,
        ima,
        tiny_train_config(method="ima", epochs=1, init=str(tiny_run / "checkpoints" / "last.pt")),
        progress=False,
    )
    evaluate(std, EvalConfig(**EVAL, hd95=True), progress=False)
    evaluate(ima, EvalConfig(**EVAL, hd95=False), progress=False)
    return [std, ima]


@pytest.fixture(scope="session")
def report(evaluated_runs) -> Report:
    from imaseg.report import build_report

    html, md = build_report(evaluated_runs)
    return Report(evaluated_runs, html, md)
