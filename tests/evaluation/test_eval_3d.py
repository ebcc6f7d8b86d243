"""3D end to end: volumes in, a 3D UNet trained on whole volumes, evaluation through sliding windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_train_config

from imaseg.attacks import SlidingWindowForward
from imaseg.cache.reader import CaseStore
from imaseg.cache.writer import preprocess_dataset
from imaseg.evaluation import EvalConfig, evaluate
from imaseg.evaluation import cells as cells_module
from imaseg.training import train
from imaseg.transforms.chain import PreprocessConfig


@pytest.fixture(scope="module")
def run_3d(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("three_d")
    config = PreprocessConfig(
        intensity="none", mode="3d", spatial_size=[32, 32, 8], folds=5, val_groups=0, group_regex=r"^(patient\d+)"
    )
    preprocess_dataset(tiny_data, root / "cache", config, progress=False)
    train(root / "cache", root / "run", tiny_train_config(epochs=2, channels=[4, 8], batch_size=2), progress=False)
    return root


def test_3d_cache_keeps_whole_volumes_as_samples(run_3d):
    store = CaseStore(run_3d / "cache")
    samples = store.samples("train")
    assert store.spatial_dims == 3
    assert samples.images.shape[1:] == (1, 32, 32, 8)
    assert all(":" not in sample for sample in samples.ids), "a volume is one sample, keyed by its case id"


def test_3d_evaluation_attacks_whole_volumes_through_sliding_windows(run_3d, monkeypatch):
    seen = []
    original = cells_module.case_forward

    def spy(network, spatial_shape, layout):
        forward = original(network, spatial_shape, layout)
        seen.append(isinstance(forward, SlidingWindowForward))
        return forward

    monkeypatch.setattr(cells_module, "case_forward", spy)
    config = EvalConfig(
        attacks=["pgd-l2", "noise-l2"],
        eps=[0.0, 2.0],
        steps=2,
        overlays=1,
        hd95=False,
        steps_check=False,
        roi_size=[16, 16, 8],
    )
    summary = evaluate(run_3d / "run", config, progress=False)
    assert seen and all(seen), "a roi smaller than the volume must go through the sliding window"
    cell = summary["attacks"]["pgd-l2"]["cells"][1]
    volume_voxels = 32 * 32 * 8
    # One L2 ball over the whole volume (clipping to the intensity range may cut a little off it); a budget
    # spent per window would reach 2x here, with four 16x16x8 windows tiling the 32x32x8 volume.
    assert 1.0 < cell["realised_norm"] <= 2.0 + 1e-4, "the L2 budget is over the whole volume"
    assert cell["eps_rms"] == pytest.approx(2.0 / np.sqrt(volume_voxels), rel=1e-6)
    clean = summary["clean"]["mean_dice"]["global"]
    assert summary["attacks"]["pgd-l2"]["cells"][0]["mean_dice"]["global"] == clean
    overlay = np.load(run_3d / "run" / "eval" / "default" / "overlays" / f"{summary['cases'][0]}.npz")
    assert overlay["image"].shape == (32, 32) and overlay["label"].shape == (32, 32)


def test_sliding_window_blending_reproduces_a_pointwise_network_exactly():
    """A 1x1x1 convolution has no context, so any correct window tiling and blending gives the plain forward."""
    net = torch.nn.Conv3d(1, 3, 1)
    volume = torch.rand(1, 1, 20, 24, 12)
    for mode in ("constant", "gaussian"):
        forward = SlidingWindowForward(net, (12, 12, 8), mode=mode, overlap=0.5)
        with torch.no_grad():
            assert torch.allclose(forward(volume), net(volume), atol=1e-5)
