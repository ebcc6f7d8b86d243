"""Evaluated copies of the tiny run, shared by the evaluation tests (each test copies before changing)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from eval_helpers import Evaluated, read_rows, small_config


@pytest.fixture
def copy_run(tiny_run, tmp_path):
    """Factory of fresh, writable copies of ``tiny_run`` under ``tmp_path``."""

    def copy(name: str = "run") -> Path:
        target = tmp_path / name
        shutil.copytree(tiny_run, target, ignore=shutil.ignore_patterns("eval"))
        return target

    return copy


@pytest.fixture(scope="session")
def evaluated(tiny_run, tmp_path_factory) -> Evaluated:
    """``tiny_run`` evaluated once (pgd / noise / worst L2, eps 0, 0.5, 1; the 2x-steps and both masking checks
    on, as by default); read-only."""
    from imaseg.evaluation import evaluate

    run = tmp_path_factory.mktemp("evaluated") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    summary = evaluate(
        run, small_config(steps_check=True, gradient_free_check=True, transfer_check=True), progress=False
    )
    out = run / "eval" / "default"
    return Evaluated(run, out, summary, read_rows(out / "results.csv"))
