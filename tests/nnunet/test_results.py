"""Reading an nnU-Net results folder needs no nnunetv2: missing folds, checkpoints and plans are named with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imaseg.data.errors import DataError
from imaseg.nnunet.results import checkpoint_name, default_fold, is_results_folder, open_results


def _results(root: Path, folds=("0",), checkpoints=("checkpoint_final.pth",)) -> Path:
    folder = root / "Dataset001_Toy" / "nnUNetTrainer__nnUNetPlans__2d"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps({"dataset_name": "Dataset001_Toy"}))
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1}}))
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        for name in checkpoints:
            (folder / f"fold_{fold}" / name).write_bytes(b"")
    return folder


def test_open_results_reads_the_fold_and_checkpoint(tmp_path):
    folder = _results(tmp_path, checkpoints=("checkpoint_final.pth", "checkpoint_best.pth"))
    assert is_results_folder(folder) and not is_results_folder(folder.parent)
    results = open_results(folder)
    assert results.fold == "0" and results.checkpoint == folder / "fold_0" / "checkpoint_final.pth"
    assert results.name_parts == ("nnUNetTrainer", "nnUNetPlans", "2d") and results.dataset_name == "Dataset001_Toy"
    assert open_results(folder, 0, "best").checkpoint.name == "checkpoint_best.pth"
    assert results.describe() == "Dataset001_Toy nnUNetTrainer__nnUNetPlans__2d fold 0 (checkpoint_final.pth)"


def test_the_default_fold_is_the_only_one_else_0(tmp_path):
    assert default_fold(_results(tmp_path / "a", folds=("all",))) == "all"
    assert default_fold(_results(tmp_path / "b", folds=("1", "0"))) == "0"
    with pytest.raises(DataError, match=r"folds 1, 2; name the fold to score \(--fold F\)"):
        default_fold(_results(tmp_path / "c", folds=("1", "2")))


def test_missing_files_are_named_with_the_fix(tmp_path):
    folder = _results(tmp_path)
    with pytest.raises(DataError, match=r"fold_3/checkpoint_final\.pth: fold 3 was not trained here \(folds: 0\)"):
        open_results(folder, 3)
    with pytest.raises(DataError, match=r"fold_0/checkpoint_best\.pth: missing; .*score --checkpoint final"):
        open_results(folder, 0, "best")
    (folder / "fold_0" / "checkpoint_final.pth").unlink()
    with pytest.raises(DataError, match=r"fold_0/checkpoint_final\.pth: missing; training did not finish"):
        open_results(folder, 0)
    (folder / "plans.json").unlink()
    with pytest.raises(DataError, match=r"plans\.json: missing; nnU-Net copies it there"):
        open_results(folder, 0)
    with pytest.raises(DataError, match="no such nnU-Net results folder"):
        open_results(tmp_path / "nowhere")


def test_checkpoint_names():
    assert checkpoint_name("final") == checkpoint_name("last") == "checkpoint_final.pth"
    with pytest.raises(
        ValueError, match=r"`checkpoint` must be final, best or a checkpoint file name \(\*\.pth\), got '../x'"
    ):
        checkpoint_name("../x")
