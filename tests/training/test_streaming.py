"""The streaming loader: the same batches as the in-memory path, workers that change nothing, bounded case
memory, and 3D patches whose IMA margins belong to their case."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import tiny_train_config

from imaseg.cache.reader import CaseStore
from imaseg.cache.streaming import StreamingSamples, sample_index
from imaseg.cache.writer import preprocess_dataset
from imaseg.checkpoint import load_checkpoint
from imaseg.data.errors import DataError
from imaseg.evaluation import EvalConfig, evaluate
from imaseg.training import train
from imaseg.transforms.chain import PreprocessConfig


@pytest.fixture(scope="module")
def cache_3d(tiny_data, tmp_path_factory):
    """``tiny_data`` as native-resolution volumes (32 x 32 x 4, no resizing)."""
    root = tmp_path_factory.mktemp("patches")
    config = PreprocessConfig(
        intensity="none", mode="3d", spatial_size=[], resize="none", folds=5, val_groups=1, group_regex=r"^(patient\d+)"
    )
    preprocess_dataset(tiny_data, root / "cache", config, progress=False)
    return root / "cache"


def _weights(run) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")["network"]


@pytest.mark.parametrize(
    ("method", "workers"),
    [("std", 0), ("ima", 0), ("ima", 2)],
    ids=["std", "ima", "ima-two-workers"],
)
def test_stream_trains_exactly_as_memory(tiny_cache, tiny_run, tmp_path, method, workers):
    """Same seeded order, same augmentation, same margins: the loader is not a hyper-parameter."""
    common = {"method": method, "epochs": 2, "val_steps": 0, "init": str(tiny_run / "checkpoints" / "last.pt")}
    common["ima_tau"] = 0.1  # a fine-tuned model: some slices keep their margin, others lose it
    train(tiny_cache, tmp_path / "memory", tiny_train_config(loader="memory", **common), progress=False)
    train(
        tiny_cache,
        tmp_path / "stream",
        tiny_train_config(loader="stream", workers=workers, cache_mib=0.01, **common),
        progress=False,
    )
    memory, stream = _weights(tmp_path / "memory"), _weights(tmp_path / "stream")
    assert all(torch.equal(memory[k], stream[k]) for k in memory)
    if method == "ima":
        margins = [
            json.loads((tmp_path / r / "margins.json").read_text())["epochs"][-1]["margins"]
            for r in ("memory", "stream")
        ]
        assert margins[0] == margins[1], "each margin followed its sample"
        assert len(set(margins[0])) > 1, "some margins grew and others shrank: the comparison says something"


def test_the_index_comes_from_the_manifest(tiny_cache, cache_3d):
    store = CaseStore(tiny_cache)
    index = sample_index(store, "train", 0)
    assert index.ids == store.samples("train", 0).ids and len(index) == len(index.ids)
    volumes = sample_index(CaseStore(cache_3d), "train", 0, patches_per_case=3)
    assert len(volumes) == 3 * len(volumes.ids) and all(":" not in i for i in volumes.ids)
    assert [e[2] for e in volumes.entries[:3]] == [0, 0, 0], "a case's patches share its margin"
    with pytest.raises(DataError, match="patches need a 3D cache"):
        sample_index(store, "train", 0, patches_per_case=2)


def test_patches_are_seeded_per_epoch_and_position_and_the_case_memory_is_bounded(cache_3d):
    store = CaseStore(cache_3d)
    index = sample_index(store, "train", 0, patches_per_case=2)
    data = StreamingSamples(store, index, cache_mib=0, patch_size=[16, 16, 4], pos_ratio=1.0, seed=3)
    image, label, margin = data[(1, 0)]
    assert image.shape == (1, 16, 16, 4) and label.shape == (1, 16, 16, 4) and margin == 0
    assert label.max() > 0, "pos_ratio 1: every patch is centred on foreground"
    again = StreamingSamples(store, index, cache_mib=0, patch_size=[16, 16, 4], pos_ratio=1.0, seed=3)
    assert torch.equal(again[(1, 0)][0], image), "the same (position, epoch) gives the same patch"
    assert any(not torch.equal(data[(1, e)][0], image) for e in range(1, 6)), "other epochs crop elsewhere"
    for position in range(len(data)):
        data[(position, 0)]
    assert len(data._cases) == 1


def test_patch_needs_the_stream_loader(cache_3d, tmp_path):
    with pytest.raises(ValueError, match="`patch_size` needs `loader` stream"):
        train(cache_3d, tmp_path / "run", tiny_train_config(loader="memory", patch_size=[16, 16, 4]), progress=False)


@pytest.mark.parametrize("method", ["pgd-at", "trades", "ima"])
def test_every_method_trains_on_3d_patches_and_evaluates_through_a_window_of_the_patch(
    cache_3d, tmp_path, method, monkeypatch
):
    from imaseg.evaluation import cells as cells_module

    windows = []
    original = cells_module.case_forward
    monkeypatch.setattr(
        cells_module,
        "case_forward",
        lambda network, shape, layout: (windows.append(layout.roi_size), original(network, shape, layout))[1],
    )
    config = tiny_train_config(
        method=method,
        epochs=1,
        channels=[4, 8],
        batch_size=2,
        patch_size=[16, 16, 4],
        patches_per_case=2,
        workers=1,
        val_steps=1,
        eps=0.5,
    )
    summary = train(cache_3d, tmp_path / "run", config, progress=False)
    assert np.isfinite(summary["last"]["loss"]) and "val_dice" in summary["last"]
    if method == "ima":
        margins = json.loads((tmp_path / "run" / "margins.json").read_text())
        assert margins["sample_ids"] == CaseStore(cache_3d).samples("train", 0).ids, "one margin per case"
    result = evaluate(
        tmp_path / "run",
        EvalConfig(attacks=["pgd-l2"], eps=[0.0, 1.0], steps=1, overlays=0, hd95=False, steps_check=False),
        progress=False,
    )
    assert result["spatial_dims"] == 3
    assert windows and set(windows) == {(16, 16, 4)}, "whole volumes slide a window of the training patch"
