"""``pipelines/nnunet_heart.py``: ACDC through nnU-Net with imaseg's trainers. The pieces run everywhere; the
whole pipeline (real ACDC patients, planned, trained and scored by nnU-Net) needs nnunetv2 and ../shared."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from helpers import real_data
from pipeline_tools import PIPELINES, load_pipeline

SPLIT = {"val": ["patient002"], "test": ["patient003"]}


def _acdc_like(folder: Path, patients: list[str]) -> Path:
    for patient in patients:
        for frame in ("frame01", "frame09"):
            for sub in ("imagesTr", "labelsTr"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
                nib.save(
                    nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)),
                    folder / sub / f"{patient}_{frame}.nii.gz",
                )
    return folder


def test_the_raw_dataset_splits_by_patient_and_holds_the_test_patients_out(tmp_path):
    pipeline = load_pipeline("nnunet_heart")
    data = _acdc_like(tmp_path / "acdc", ["patient001", "patient002", "patient003", "patient004"])
    parts = pipeline.write_raw(data, tmp_path / "raw", "Dataset227_X", SPLIT)
    assert parts["test"] == ["patient003_frame01", "patient003_frame09"]
    assert parts["val"] == ["patient002_frame01", "patient002_frame09"] and len(parts["train"]) == 4
    root = tmp_path / "raw" / "Dataset227_X"
    assert sorted(p.name for p in (root / "imagesTs").iterdir()) == [
        "patient003_frame01_0000.nii.gz",
        "patient003_frame09_0000.nii.gz",
    ]
    assert json.loads((root / "dataset.json").read_text())["numTraining"] == 6
    held_out = pipeline.held_out_folder(root, tmp_path / "test")
    assert sorted(p.name for p in (held_out / "labelsTr").iterdir()) == [
        "patient003_frame01.nii.gz",
        "patient003_frame09.nii.gz",
    ]


def test_a_case_name_that_is_not_acdcs_is_refused():
    with pytest.raises(ValueError, match="not an ACDC case name"):
        load_pipeline("nnunet_heart")._patient("heart_01")


def test_the_cpu_configuration_is_nnunets_2d_made_smaller(tmp_path):
    pipeline = load_pipeline("nnunet_heart")
    arch = {
        "n_stages": 7,
        "features_per_stage": [32] * 7,
        "kernel_sizes": [],
        "strides": [],
        "n_conv_per_stage": [],
        "n_conv_per_stage_decoder": [],
    }
    two_d = {
        "data_identifier": "nnUNetPlans_2d",
        "spacing": [1.0, 1.0],
        "patch_size": [256, 224],
        "batch_size": 24,
        "architecture": {"arch_kwargs": arch},
    }
    plans = tmp_path / "plans.json"
    plans.write_text(json.dumps({"plans_name": "nnUNetPlans", "configurations": {"2d": two_d}}))
    settings = yaml.safe_load((PIPELINES / "configs" / "nnunet" / "heart.yaml").read_text())["cpu_configuration"]
    pipeline.add_cpu_configuration(plans, "2d_cpu", settings)
    written = json.loads(plans.read_text())["configurations"]
    cpu = written["2d_cpu"]
    assert (
        cpu["data_identifier"] == "nnUNetPlans_2d_cpu"
        and cpu["spacing"] == [2.0, 2.0]
        and cpu["patch_size"] == [128, 128]
    )
    assert cpu["architecture"]["arch_kwargs"]["features_per_stage"] == [16, 32, 64, 128, 128]
    assert cpu["architecture"]["arch_kwargs"]["strides"] == [[1, 1]] + [[2, 2]] * 4
    assert written["2d"]["patch_size"] == [256, 224]  # nnU-Net's own configuration is left alone


def test_the_table_shows_each_model_tta_and_budget_with_its_interval():
    table = load_pipeline("nnunet_heart").summary_table(
        {
            "eps": [0, 5],
            "rows": [
                {"model": "std", "tta": "no", "agreement": 0.9999, "dice": [[0.9, 0.88, 0.92], [0.1, 0.05, 0.15]]}
            ],
        }
    )
    assert "| std | no | 0.9999 | 0.900 [0.880, 0.920] | 0.100 [0.050, 0.150] |" in table


def test_tta_can_be_scored_at_fewer_budgets_and_the_table_says_which_were_not():
    scores = load_pipeline("nnunet_scores")
    evaluation = {"eps": [0, 2.5, 5], "tta_eps": [0, 5], "steps": 20, "tta": [False, True]}
    assert scores.scored_budgets(evaluation, tta=True) == [0.0, 5.0]
    assert scores.scored_budgets(evaluation, tta=False) == [0.0, 2.5, 5.0]
    assert scores.scored_budgets({"eps": [0, 1]}, tta=True) == [0.0, 1.0]  # no tta_eps: every budget
    plain = {k: v for k, v in evaluation.items() if k != "tta_eps"}
    assert scores.score_fingerprint(evaluation, tta=False) == plain  # no-TTA runs are not scored again
    assert scores.score_fingerprint(evaluation, tta=True) == {**plain, "eps": [0, 5]}
    assert scores.score_fingerprint(plain, tta=True) == plain  # configs without tta_eps keep their stages
    row = {"model": "std", "tta": "yes", "agreement": 1.0, "eps": [0.0, 5.0], "dice": [[0.9, 0.8, 1], [0.2, 0.1, 0.3]]}
    table = scores.summary_table({"eps": [0, 2.5, 5], "rows": [row]})
    assert "| std | yes | 1.0000 | 0.900 [0.800, 1.000] | not scored | 0.200 [0.100, 0.300] |" in table


@pytest.mark.parametrize(
    ("tta_eps", "message"),
    [
        ([0, 7], r"`evaluate.tta_eps` must be budgets of `evaluate.eps` \[0, 2.5, 5\], got 7 outside it"),
        ([], r"`evaluate.tta_eps` must be a non-empty list of budgets, e.g. \[0, 5\], got \[\]"),
        (5, r"`evaluate.tta_eps` must be a non-empty list of budgets, e.g. \[0, 5\], got 5"),
        (None, None),
        ([0, 5.0], None),
    ],
)
def test_tta_budgets_are_checked(tta_eps, message):
    error = load_pipeline("nnunet_config").budget_error({"eps": [0, 2.5, 5], "tta_eps": tta_eps})
    assert error is None if message is None else re.fullmatch(message, error)


@pytest.mark.parametrize("name", ["heart.yaml", "heart_gpu.yaml"])
def test_the_shipped_configs_pass_the_upfront_check(name):
    config = yaml.safe_load((PIPELINES / "configs" / "nnunet" / name).read_text())
    assert load_pipeline("nnunet_config").config_error(config) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["evaluate"].pop("tta"), r"`evaluate.tta` is missing \(a list\)"),
        (lambda c: c["evaluate"].update(tta=True), "`evaluate.tta` must be a list, got True"),
        (lambda c: c.pop("epochs"), r"`epochs` is missing \(a whole number\)"),
        (lambda c: c["methods"]["pgd-at"].update(adversarial={"epz": 5}), "methods.pgd-at: .*unknown keys"),
        (lambda c: c["methods"].update(std="std"), "`methods.std` must be a mapping with a `method`"),
        (lambda c: c["evaluate"].update(attacks=["pgd-l3"]), "evaluate.attacks: "),
        (lambda c: c["evaluate"].update(eps=[0, "5"]), "`evaluate.eps` must be a non-empty list of budgets"),
    ],
    ids=["no-tta", "tta-not-a-list", "no-epochs", "typo-in-last-method", "method-not-a-mapping", "attack", "eps"],
)
def test_a_config_mistake_is_found_before_hours_of_training(change, message):
    config = yaml.safe_load((PIPELINES / "configs" / "nnunet" / "heart.yaml").read_text())
    change(config)
    assert re.search(message, load_pipeline("nnunet_config").config_error(config))


def test_a_tta_budget_outside_the_grid_is_refused_before_anything_runs(tmp_path, capsys):
    config = yaml.safe_load((PIPELINES / "configs" / "nnunet" / "heart.yaml").read_text())
    config["evaluate"]["tta_eps"] = [0, 7]
    path = tmp_path / "heart.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit):  # --quick drops tta_eps, but a wrong one is refused before that
        load_pipeline("nnunet_heart").main(["--config", str(path), "--out", str(tmp_path / "out"), "--quick"])
    assert "`evaluate.tta_eps` must be budgets of `evaluate.eps`" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_quick_pipeline_trains_and_scores_acdc_through_nnunet(tmp_path):
    pytest.importorskip("nnunetv2", reason="nnunetv2 not installed (README, 'nnU-Net')")
    acdc = real_data("acdc_heart")
    data = tmp_path / "acdc"
    for sub in ("imagesTr", "labelsTr"):
        (data / sub).mkdir(parents=True)
        for file in sorted((acdc / sub).glob("patient00[1-6]_*.nii.gz")):
            (data / sub / file.name).symlink_to(file)
    config = yaml.safe_load((PIPELINES / "configs" / "nnunet" / "heart.yaml").read_text())
    config.update(
        split={"val": ["patient005"], "test": ["patient006"]}, methods={"pgd-at": config["methods"]["pgd-at"]}
    )
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert (
        load_pipeline("nnunet_heart").main(
            ["--quick", "--config", str(config_file), "--data", str(data), "--out", str(out)]
        )
        == 0
    )
    table = (out / "nnunet_heart.md").read_text()
    assert "| pgd-at | no |" in table
    agreement = float(table.splitlines()[2].split("|")[3])
    assert agreement >= 0.999  # imaseg's clean masks are nnU-Net's predictor's
    checkpoint = next((out / "nnunet_results").rglob("checkpoint_final.pth"))
    assert checkpoint.parent.parent.name.startswith("nnUNetTrainerImaseg_pgdat_")
    assert checkpoint.parent.parent.name.endswith("__nnUNetPlans__2d_cpu")
    assert (checkpoint.parent / "validation" / "summary.json").is_file()  # nnU-Net's own final validation ran
    report = (out / "report.html").read_text()
    assert "pgd-at-notta" in report and "its nnU-Net checkpoint logs 1 epoch(s)" in report
