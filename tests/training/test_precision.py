"""Mixed precision (bf16, or fp16 with a gradient scaler) and torch.compile for training and inner attacks."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_train_config

from imaseg.checkpoint import load_checkpoint
from imaseg.training import train


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_mixed_precision_trains_and_fp16_keeps_its_scaler(tiny_cache, tmp_path, dtype):
    config = tiny_train_config(method="pgd-at", epochs=1, amp=True, amp_dtype=dtype, val_steps=0)
    summary = train(tiny_cache, tmp_path / "run", config, progress=False)
    assert math.isfinite(summary["last"]["loss"])
    scaler = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["scaler"]
    if dtype == "fp16":
        assert scaler["scale"] > 0, "fp16 scales the loss; the scale is checkpointed for resume"
    else:
        assert scaler == {}, "bf16 needs no scaler"


def test_compile_wraps_the_network_for_training_and_attacks_and_checkpoints_stay_plain(
    tiny_cache, tmp_path, monkeypatch
):
    compiled = []

    def fake_compile(module, *args, **kwargs):  # the real one needs a C++ toolchain on CPU and minutes
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    train(tiny_cache, tmp_path / "run", tiny_train_config(method="pgd-at", epochs=1, compile=True), progress=False)
    assert len(compiled) == 1 and isinstance(compiled[0], torch.nn.Module)
    keys = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["network"]
    assert not any(k.startswith("_orig_mod.") for k in keys), "the bare network's weights are saved"
