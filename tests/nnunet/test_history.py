"""nnU-Net's per-epoch log, read from a checkpoint into a run folder's ``log.csv`` (no nnunetv2 needed)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from imaseg.nnunet.history import nnunet_history, write_nnunet_history
from imaseg.run import RunDir

LOG = {
    "epoch_start_timestamps": [0.0, 30.0, 61.0],
    "epoch_end_timestamps": [29.5, 60.0],  # the third epoch never finished
    "train_losses": np.array([0.5, 0.2, 0.1], dtype=np.float32),  # arrays as well as lists
    "mean_fg_dice": [np.float32(0.1), np.float32(0.4)],
    "lrs": [0.01, 0.009, 0.008],
}


def test_rows_stop_at_the_last_finished_epoch_and_take_arrays_and_numpy_scalars():
    rows = nnunet_history({"logging": LOG})
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [r["seconds"] for r in rows] == [29.5, 30.0]
    assert rows[1]["loss"] == np.float32(0.2) and rows[1]["val_pseudo_dice"] == np.float32(0.4)
    assert "val_loss" not in rows[0]  # not logged: no column
    assert nnunet_history({}) == [] and nnunet_history({"logging": None}) == []


def test_the_checkpoints_log_replaces_the_runs_and_an_unreadable_one_leaves_none(tmp_path, caplog):
    checkpoint = tmp_path / "checkpoint_final.pth"
    saved = {**LOG, "train_losses": [np.float32(v) for v in LOG["train_losses"]]}  # as nnU-Net keeps them
    torch.save({"network_weights": {}, "init_args": {}, "logging": saved}, checkpoint)
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("epoch,seconds\n1,5\n2,5\n3,5\n4,5\n")  # another checkpoint's log
    assert write_nnunet_history(run, checkpoint) == 2
    assert [r["epoch"] for r in RunDir(run).read_log()] == ["1", "2"]
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING):
        assert write_nnunet_history(run, broken) == 0
    assert not (run / "log.csv").exists() and "broken.pth" in caplog.text
