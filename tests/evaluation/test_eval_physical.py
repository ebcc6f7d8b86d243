"""Physical threat models in ``evaluate`` and the report: their own budget grids, units and words."""

from __future__ import annotations

import json

import pytest
from eval_helpers import small_config

from imaseg.evaluation import evaluate
from imaseg.report import build_report

ATTACKS = ["bias-field-rel", "bias-field-random-rel", "snr-noise-nsr"]


def test_physical_kinds_are_evaluated_and_reported_in_their_own_units(copy_run, tmp_path):
    run = copy_run()
    # with an L2 attack beside them: the sanity checks' headline budget is an L2 one
    evaluate(run, small_config(attacks=["pgd-l2", *ATTACKS], eps=[0.0, 0.5], overlays=0), progress=False)
    cells = run / "eval" / "default" / "cells"
    for name, eps in (("bias-field-rel", 0.2), ("bias-field-random-rel", 0.3), ("snr-noise-nsr", 0.1)):
        cell = json.loads((cells / f"{name}__eps{eps:g}.json").read_text())
        for case in cell["cases"].values():
            assert case["eps_source"] == pytest.approx(eps)  # a relative budget has no intensity scale
            assert 0 < case["norm_mean"] <= eps + 1e-5  # the realised budget, in the kind's own unit
    assert not (cells / "bias-field-rel__eps0.5.json").exists()  # the L2 grid is not the kind's grid

    report = build_report([run], tmp_path / "report" / "physical")
    text = report[1].read_text(encoding="utf-8")  # (html, md)
    assert "bias-field-rel: eps is the max relative intensity change" in text
    assert "snr-noise-nsr: eps is the noise-to-signal ratio, SNR = -20 log10(eps) dB" in text
    assert "eps 0.2: up to +/-20 %" in text  # the threat model in words a clinician reads


def test_kspace_and_misregistration_kinds_run_on_their_grids_with_the_cases_spacing(copy_run, tmp_path):
    run = copy_run()
    kinds = ["kspace-asr", "affine-mm", "affine-random-mm"]
    evaluate(run, small_config(attacks=["pgd-l2", *kinds], eps=[0.0, 0.5], overlays=0), progress=False)
    cells = run / "eval" / "default" / "cells"
    for name, eps in (("kspace-asr", 0.1), ("affine-mm", 2.0), ("affine-random-mm", 2.0)):
        cell = json.loads((cells / f"{name}__eps{eps:g}.json").read_text())
        for case in cell["cases"].values():
            assert 0 < case["norm_mean"] <= eps + 1e-4  # the realised budget, in mm of the case's own grid
    text = build_report([run], tmp_path / "report" / "physical")[1].read_text(encoding="utf-8")
    assert "affine-mm: eps is the max displacement of any voxel in mm" in text
    assert "kspace-asr: eps is the artefact-to-image energy ratio" in text
