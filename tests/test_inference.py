"""The one inference path: slice-wise 2D, whole or sliding-window 3D, shared by evaluation and prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from imaseg.attacks import AttackSettings, SlidingWindowForward
from imaseg.cache.case_meta import CaseMeta
from imaseg.cache.reader import CachedCase
from imaseg.evaluation.cells import CaseSettings, Cell, attack_case
from imaseg.inference import InferenceLayout, case_forward, segment


def pointwise(dims: int, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return conv(1, classes, 1).eval()


def test_a_2d_model_segments_a_volume_slice_by_slice_along_its_axis():
    image = np.random.default_rng(0).normal(size=(1, 6, 5, 4)).astype(np.float32)
    net = pointwise(2)
    labels = segment(net, image, InferenceLayout(slice_axis=1, batch_size=4))
    with torch.no_grad():
        expected = net(torch.from_numpy(image).movedim(2, 0)).argmax(1).movedim(0, 1).numpy()
    assert labels.shape == (6, 5, 4) and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected)


def test_a_3d_volume_larger_than_the_window_slides_and_matches_the_whole_forward():
    image = np.random.default_rng(1).normal(size=(1, 8, 8, 6)).astype(np.float32)
    net = pointwise(3)
    layout = InferenceLayout(slice_axis=None, roi_size=(4, 4, 4))
    assert isinstance(case_forward(net, image.shape[1:], layout), SlidingWindowForward)
    assert case_forward(net, (4, 4, 4), layout) is net
    with torch.no_grad():
        whole = net(torch.from_numpy(image)[None]).argmax(1)[0].numpy()
    np.testing.assert_array_equal(segment(net, image, layout), whole)


def test_evaluations_clean_pass_is_the_same_inference():
    rng = np.random.default_rng(2)
    image = rng.normal(size=(1, 5, 6, 6)).astype(np.float32)
    case = CachedCase(
        "c", image, rng.integers(0, 3, (5, 6, 6)).astype(np.uint8), np.eye(4), np.eye(4), CaseMeta("c", slice_axis=0)
    )
    net = pointwise(2)
    output = attack_case(net, case, Cell("clean", 0.0), CaseSettings(AttackSettings(), 2, None), torch.device("cpu"))
    np.testing.assert_array_equal(output.prediction, segment(net, image, InferenceLayout(0, None, 2)))


def test_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="`batch_size` must be >= 1, got 0"):
        InferenceLayout(slice_axis=0, batch_size=0)
