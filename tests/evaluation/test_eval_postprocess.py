"""``imaseg evaluate --postprocess lcc``: the clean and every attacked prediction is post-processed before Dice,
the attacks still optimise the raw logits, the summary says so, and the raw evaluation is left alone."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
import yaml
from eval_helpers import numpy_dice
from torch import nn

from imaseg.attacks import AttackSettings
from imaseg.cache.case_meta import CaseMeta
from imaseg.cache.reader import CachedCase, CaseStore
from imaseg.cli import main
from imaseg.evaluation import EvalConfig, evaluate
from imaseg.evaluation.cells import CLEAN, CaseOutput, CaseSettings, Cell, attack_case, case_record, worst_of
from imaseg.evaluation.plan import fingerprint
from imaseg.postprocess import postprocess
from imaseg.summary import Summary

pytest.importorskip("skimage", reason="lcc needs scikit-image (in the test extra)")

FAST = ["--steps", "2", "--no-hd95", "--no-steps-check", "--overlays", "0", "--no-progress"]
FLAGS = ["--eps", "0,0.5", "--attacks", "pgd-l2,noise-l2,worst-l2", *FAST]


class ImageIsTheAnswer(nn.Module):
    """Predicts the class each voxel's intensity names: the test writes the prediction into the image."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.classes = classes
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = x[:, 0].round().long().clamp(0, self.classes - 1)
        return nn.functional.one_hot(index, self.classes).movedim(-1, 1).float() * self.scale


def _case(prediction: np.ndarray, label: np.ndarray) -> CachedCase:
    """A 2D model's volume (slices along the last axis) whose raw prediction will be ``prediction``."""
    image = prediction[None].astype(np.float32)
    return CachedCase("c", image, label.astype(np.uint8), np.eye(4), np.eye(4), CaseMeta("c", slice_axis=2))


def _body() -> np.ndarray:
    label = np.zeros((10, 10, 3), np.uint8)
    label[1:5, 1:5, :] = 1
    label[6:9, 6:9, 1:] = 2
    return label


def _clean(case: CachedCase, postprocess_name: str) -> tuple[CaseOutput, dict]:
    settings = CaseSettings(AttackSettings(), 4, None, postprocess=postprocess_name)
    output = attack_case(ImageIsTheAnswer(), case, Cell(CLEAN, 0.0), settings, torch.device("cpu"))
    return output, case_record(output, case, 3, Cell(CLEAN, 0.0), hd95=False)


def test_a_false_positive_island_is_removed_and_dice_rises():
    label = _body()
    predicted = label.copy()
    predicted[8, 1, 0] = 1  # a class-1 island far from its body: a false positive
    raw, raw_record = _clean(_case(predicted, label), "none")
    kept, kept_record = _clean(_case(predicted, label), "lcc")
    np.testing.assert_array_equal(raw.prediction, predicted)
    np.testing.assert_array_equal(kept.prediction, label)
    np.testing.assert_array_equal(kept.raw, predicted)
    assert raw.raw is None, "no post-processing, no second copy"
    assert kept_record["dice"][0] == 1.0 > raw_record["dice"][0]
    assert kept_record["dice"][1] == raw_record["dice"][1] == 1.0, "class 2 had no island"
    assert kept.sample_dice == [1.0, 1.0, 1.0] and raw.sample_dice[0] < 1.0, "per-slice Dice of what is scored"


def test_an_island_the_truth_has_is_removed_too_and_dice_falls():
    label = _body()
    label[8, 1, 0] = 1  # the truth itself has two class-1 components
    _, raw_record = _clean(_case(label, label), "none")
    kept, kept_record = _clean(_case(label, label), "lcc")
    assert kept.prediction[8, 1, 0] == 0
    assert raw_record["dice"][0] == 1.0 > kept_record["dice"][0]


def test_without_islands_lcc_changes_nothing():
    label = _body()
    raw, raw_record = _clean(_case(label, label), "none")
    kept, kept_record = _clean(_case(label, label), "lcc")
    np.testing.assert_array_equal(kept.prediction, raw.prediction)
    assert kept_record["dice"] == raw_record["dice"]


def test_the_worst_case_stitches_the_raw_member_slices_then_post_processes():
    label = _body()
    a, b = label.copy(), label.copy()
    a[8, 1, 0] = 1  # member a: an island on slice 0
    b[1:5, 1:5, 2] = 0  # member b: class 1 erased on slice 2
    case = _case(label, label)
    members = [_clean(_case(p, label), "lcc")[0] for p in (a, b)]
    choice = np.array([0, 0, 1])
    worst = worst_of(members, case, choice, "lcc")
    stitched = np.concatenate([a[..., :2], b[..., 2:]], axis=2)
    np.testing.assert_array_equal(worst.raw, stitched)
    np.testing.assert_array_equal(worst.prediction, postprocess(stitched, "lcc"))
    assert worst.prediction[8, 1, 0] == 0 and not worst.prediction[..., 2][1:5, 1:5].any()


def test_postprocess_is_part_of_the_fingerprint_and_of_the_default_tag(tiny_run):
    checkpoint = tiny_run / "checkpoints" / "last.pt"
    raw, lcc = EvalConfig(), EvalConfig(postprocess="LCC")
    assert lcc.postprocess == "lcc" and lcc.tag == "default-lcc" and raw.tag == "default"
    assert EvalConfig(postprocess="lcc", tag="mine").tag == "mine"
    assert fingerprint(raw, checkpoint, ["a"]) != fingerprint(lcc, checkpoint, ["a"])
    with pytest.raises(ValueError, match=r"unknown `postprocess` 'islands'; choose one of none, lcc"):
        EvalConfig(postprocess="islands")


def test_evaluate_lcc_writes_a_separate_evaluation_that_records_it(copy_run):
    run = copy_run()
    assert main(["evaluate", "--run", str(run), *FLAGS]) == 0
    raw_summary = (run / "eval" / "default" / "summary.json").read_bytes()
    assert main(["evaluate", "--run", str(run), *FLAGS, "--postprocess", "lcc"]) == 0
    assert (run / "eval" / "default" / "summary.json").read_bytes() == raw_summary, "the raw evaluation is kept"
    raw_dir, lcc_dir = run / "eval" / "default", run / "eval" / "default-lcc"
    summary = Summary.read(lcc_dir / "summary.json")
    assert (
        summary.settings.postprocess == "lcc" and Summary.read(raw_dir / "summary.json").settings.postprocess == "none"
    )
    assert "predictions post-processed: lcc" in summary.headline[0]
    fingerprints = [yaml.safe_load((d / "settings.yaml").read_text())["fingerprint"] for d in (raw_dir, lcc_dir)]
    assert fingerprints[0] != fingerprints[1], "cells computed without lcc are never reused"
    store = CaseStore(yaml.safe_load((run / "config.yaml").read_text())["cache"])
    changed = 0
    for key in ("clean", "pgd-l2__eps0.5"):
        record = json.loads((lcc_dir / "cells" / f"{key}.json").read_text())
        with np.load(lcc_dir / "cells" / f"{key}.npz") as ours, np.load(raw_dir / "cells" / f"{key}.npz") as theirs:
            for cid, case in record["cases"].items():
                raw, kept = ours[f"raw__{cid}"], ours[f"pred__{cid}"]
                np.testing.assert_array_equal(raw, theirs[f"pred__{cid}"], err_msg="the attack saw the raw logits")
                np.testing.assert_array_equal(kept, postprocess(raw, "lcc"))
                changed += int(not np.array_equal(kept, raw))
                label = store.load_case(cid).label
                np.testing.assert_allclose(case["dice"], numpy_dice(kept, label, store.num_classes), equal_nan=True)
    assert changed, "the tiny model predicts islands, so lcc is seen at work"
    members = [summary.curve(name).cell(0.5).global_dice for name in ("pgd-l2", "noise-l2")]
    assert summary.curve("worst-l2").cell(0.5).global_dice <= min(members) + 1e-9
    assert main(["report", str(run), "--tag", "default-lcc", "--out", str(run / "report_lcc")]) == 0
    html = (run / "report_lcc.html").read_text()
    assert "Predictions post-processed with lcc (per class, only the largest connected component is kept)" in html


def test_evaluate_names_the_missing_package_before_any_work(copy_run, monkeypatch, capsys):
    run = copy_run()
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with pytest.raises(ValueError, match=r"needs scikit-image, which is not installed: pip install \"imaseg\[lcc\]\""):
        evaluate(run, EvalConfig(postprocess="lcc", attacks=["pgd-l2"], eps=[0.0]), progress=False)
    assert main(["evaluate", "--run", str(run), *FLAGS, "--postprocess", "lcc"]) == 1
    assert 'pip install "imaseg[lcc]"' in capsys.readouterr().err
    assert not (run / "eval").exists()
