"""Budgets as per-voxel RMS (``--eps-unit rms``): the same numbers mean the same perturbation per voxel
whatever the image size, and every record says the budget in both units."""

from __future__ import annotations

import json
import math

import pytest
from eval_helpers import small_config

from imaseg.evaluation import evaluate

SLICE_VOXELS = 32 * 32  # tiny_cache: 32 x 32 slices, one channel


def test_rms_budgets_become_l2_budgets_of_the_slice(copy_run):
    run = copy_run()
    summary = evaluate(
        run, small_config(attacks=["pgd-l2"], eps=[0.0, 0.01], eps_unit="rms", overlays=0), progress=False
    )
    cell = json.loads((run / "eval" / "default" / "cells" / "pgd-l2__eps0.01.json").read_text())
    for case in cell["cases"].values():
        assert case["eps_rms"] == pytest.approx(0.01)
        assert case["eps_l2"] == pytest.approx(0.01 * math.sqrt(SLICE_VOXELS))
        assert case["norm_mean"] <= case["eps_l2"] * (1 + 1e-4) and case["norm_mean"] > 0.5 * case["eps_l2"]
    assert summary["settings"]["eps_unit"] == "rms"


def test_the_unit_is_part_of_the_cells_identity(copy_run):
    run = copy_run()
    evaluate(run, small_config(attacks=["pgd-l2"], eps=[0.32], overlays=0), progress=False)
    l2 = json.loads((run / "eval" / "default" / "cells" / "pgd-l2__eps0.32.json").read_text())
    evaluate(run, small_config(attacks=["pgd-l2"], eps=[0.32], eps_unit="rms", overlays=0), progress=False)
    rms = json.loads((run / "eval" / "default" / "cells" / "pgd-l2__eps0.32.json").read_text())
    assert l2["fingerprint"] != rms["fingerprint"], "an RMS budget of 0.32 is not an L2 budget of 0.32"
