"""Intensity scaling: exact values per mode, the recorded linear map, argument checks."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from imaseg.transforms.intensity import IntensityScaling, IntensityScalingd


def values(*numbers: float) -> MetaTensor:
    return MetaTensor(torch.tensor([numbers], dtype=torch.float32))


@pytest.mark.parametrize(
    ("kwargs", "source", "expected", "scale"),
    [
        ({"mode": "none"}, (0.0, 2.5, -7.0), (0.0, 2.5, -7.0), 1.0),
        # nonzero voxels 1, 2, 3: mean 2, std 1; zeros are shifted too
        ({"mode": "zscore"}, (0.0, 1.0, 2.0, 3.0), (-2.0, -1.0, 0.0, 1.0), 1.0),
        # all voxels 0, 2: mean 1, std sqrt(2)
        ({"mode": "zscore", "nonzero": False}, (0.0, 2.0), (-(0.5**0.5), 0.5**0.5), 0.5**0.5),
        (
            {"mode": "window", "source_range": (-1000, 400)},
            (-1200.0, -1000.0, -300.0, 400.0, 1000.0),
            (0.0, 0.0, 0.5, 1.0, 1.0),
            1 / 1400,
        ),
        (
            {"mode": "window", "source_range": (-1000, 400), "clip": False},
            (-1700.0, 1100.0),
            (-0.5, 1.5),
            1 / 1400,
        ),
        ({"mode": "range", "source_range": (0, 255)}, (0.0, 51.0, 255.0), (0.0, 0.2, 1.0), 1 / 255),
        (
            {"mode": "range", "source_range": (0, 200), "target_range": (-1, 1)},
            (0.0, 50.0, 200.0, 300.0),
            (-1.0, -0.5, 1.0, 1.0),
            0.01,
        ),
    ],
    ids=["none", "zscore-nonzero", "zscore-all", "window-ct", "window-unclipped", "range-xray", "range-symmetric"],
)
def test_modes_give_exact_values(kwargs, source, expected, scale):
    out = IntensityScaling(**kwargs)(values(*source))
    torch.testing.assert_close(out, values(*expected), rtol=0, atol=1e-6, check_dtype=False)
    assert out.meta["intensity_scale"] == pytest.approx(scale)
    assert out.meta["intensity_mode"] == kwargs["mode"]


def test_percentile_mode_uses_per_image_bounds():
    image = MetaTensor(torch.arange(101, dtype=torch.float32).reshape(1, 101))
    out = IntensityScaling("percentile", percentiles=(10, 90))(image)
    assert out[0, [0, 10, 30, 50, 90, 100]].tolist() == pytest.approx([0.0, 0.0, 0.25, 0.5, 1.0, 1.0])
    assert out.meta["intensity_scale"] == pytest.approx(1 / 80)
    assert out.meta["intensity_offset"] == pytest.approx(-10 / 80)


def test_recorded_map_reproduces_the_output():
    image = values(-500.0, 0.0, 100.0)
    out = IntensityScaling("window", source_range=(-1000, 400))(image)
    scale, offset = out.meta["intensity_scale"], out.meta["intensity_offset"]
    torch.testing.assert_close(out.as_tensor(), image.as_tensor() * scale + offset)
    assert offset == pytest.approx(1000 / 1400)


def test_constant_image_does_not_divide_by_zero():
    out = IntensityScaling("zscore")(values(4.0, 4.0, 4.0))
    assert torch.equal(out.as_tensor(), torch.zeros(1, 3))


def test_plain_tensor_in_plain_tensor_out():
    out = IntensityScaling("range", source_range=(0, 10))(torch.tensor([[5.0]]))
    assert type(out) is torch.Tensor and out.item() == pytest.approx(0.5)


def test_integer_input_becomes_float():
    out = IntensityScaling("window", source_range=(-1000, 400))(MetaTensor(torch.tensor([[-300]], dtype=torch.int16)))
    assert out.dtype == torch.float32 and out.item() == pytest.approx(0.5)


def test_dictionary_version_leaves_the_label_alone():
    label = MetaTensor(torch.tensor([[0, 1, 2]]))
    out = IntensityScalingd(["image"], mode="range", source_range=(0, 255))({"image": values(255.0), "label": label})
    assert out["image"].item() == pytest.approx(1.0)
    assert out["label"] is label


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "gamma"}, r"unknown `intensity` 'gamma'; choose one of none, zscore, window, range, percentile"),
        ({"mode": "window"}, r"intensity mode 'window' needs a source range \(lo, hi\), got None"),
        ({"mode": "range", "source_range": (0, 1, 2)}, "needs a source range"),
        ({"mode": "window", "source_range": (400, -1000)}, r"source range must be increasing, got \[400, -1000\]"),
        ({"mode": "none", "target_range": (1, 0)}, r"target range must be an increasing pair, got \[1, 0\]"),
        ({"mode": "percentile", "percentiles": (90, 10)}, r"percentiles must satisfy 0 <= lo < hi <= 100"),
        ({"mode": "percentile", "percentiles": (0, 101)}, "percentiles must satisfy"),
    ],
    ids=[
        "unknown-mode",
        "window-without-range",
        "range-three-values",
        "decreasing-source",
        "decreasing-target",
        "percentiles-reversed",
        "percentile-above-100",
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IntensityScaling(**kwargs)


def test_mode_is_case_insensitive():
    assert IntensityScaling("ZScore").mode == "zscore"
