"""Case ids are plain text everywhere in the report: HTML in an id stays inert in report.md and report.html,
and ``$...$`` in an id (matplotlib mathtext) neither crashes nor renders as maths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from helpers import tiny_train_config, write_nifti

from imaseg.cache.writer import preprocess_dataset
from imaseg.evaluation import EvalConfig, evaluate
from imaseg.report import build_report
from imaseg.training import train
from imaseg.transforms.chain import PreprocessConfig

HOSTILE = "p9_<img src=x onerror=alert(1)>$x_$"  # $x_$ is invalid mathtext: it crashed the plots


def test_hostile_case_ids_are_escaped_and_plotted_as_text(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    cases = ["p1_a", "p2_a", HOSTILE]
    for case in cases:
        label = np.zeros((16, 16, 2), np.uint8)
        label[4:12, 4:12] = 1
        image = label.astype(np.float32) * 0.7 + rng.uniform(0, 0.2, label.shape).astype(np.float32)
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases]
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "fg"}, "training": training}))
    config = PreprocessConfig(intensity="none", spatial_size=[16, 16], folds=3, val_groups=0, group_regex=r"^(p\d+)")
    preprocess_dataset(root, tmp_path / "cache", config, progress=False)
    runs = []
    for fold in range(3):  # one of the folds tests the hostile case
        run = tmp_path / f"run{fold}"
        train(tmp_path / "cache", run, tiny_train_config(epochs=1, fold=fold, val_steps=0), progress=False)
        evaluate(
            run,
            EvalConfig(
                attacks=["pgd-l2"], eps=[0.0, 0.5], steps=1, hd95=False, steps_check=False, overlays=1, device="cpu"
            ),
            progress=False,
        )
        runs.append(run)
    summaries = [json.loads((r / "eval" / "default" / "summary.json").read_text()) for r in runs]
    assert any(HOSTILE in s["cases"] for s in summaries)
    html_path, md_path = build_report(runs, tmp_path / "report")
    md, page = Path(md_path).read_text(), Path(html_path).read_text()
    assert "<img src=x" not in md and "&lt;img src=x onerror=alert(1)&gt;\\$x_\\$" in md
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
