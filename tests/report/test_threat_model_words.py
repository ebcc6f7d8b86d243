"""The threat-model box's words for runs imaseg did not train (nnU-Net, TorchScript, bundles)."""

from __future__ import annotations

from pathlib import Path

from imaseg.report.collect import RunData
from imaseg.report.threat_model import training_history


def test_a_run_without_a_training_log_says_it_was_trained_elsewhere():
    run = RunData(Path("x"), "nnunet-std", {"method": {"label": "nnU-Net 2d"}, "train": {"method": "external"}})
    assert (
        training_history(run)
        == "nnU-Net 2d: trained outside imaseg's training command (no training log in its run folder)."
    )


def test_a_run_with_a_training_log_counts_its_epochs():
    log = [{"epoch": 1, "seconds": 60.0}, {"epoch": 2, "seconds": 60.0}]
    run = RunData(Path("x"), "std", {"method": {"label": "STD"}, "train": {}}, log=log)
    assert training_history(run) == "STD trained 2 epoch(s) (2.0 CPU/GPU min) from scratch."


def test_an_nnunet_run_counts_the_epochs_its_checkpoint_logs():
    config = {"method": {"label": "nnU-Net 2d"}, "train": {"method": "external", "nnunet": {"fold": "0"}}}
    run = RunData(Path("x"), "nnunet-std", config, log=[{"epoch": 1, "seconds": 90.0}])
    assert training_history(run) == "nnU-Net 2d: its nnU-Net checkpoint logs 1 epoch(s) (1.5 CPU/GPU min)."
