"""The overlay figure's pieces: per-panel Dice, error maps, class colours, and a render with never-flipped voxels."""

from __future__ import annotations

import numpy as np
import pytest

from imaseg.report.plots import _errors, _slice_dice, class_colours, overlay_figure


@pytest.mark.parametrize(
    ("name", "pred", "label", "expected"),
    [
        ("perfect", [[1, 2], [0, 0]], [[1, 2], [0, 0]], 1.0),
        ("one class half", [[1, 0], [0, 0]], [[1, 1], [0, 0]], 2 / 3),
        ("nothing anywhere", [[0, 0], [0, 0]], [[0, 0], [0, 0]], 1.0),
        ("erased", [[0, 0], [0, 0]], [[1, 0], [0, 0]], 0.0),
    ],
)
def test_slice_dice(name, pred, label, expected):
    assert _slice_dice(np.array(pred), np.array(label), 3) == pytest.approx(expected)


def test_errors_separate_misses_from_false_alarms():
    label = np.array([[1, 1, 0, 2]])
    pred = np.array([[1, 0, 1, 1]])
    assert _errors(pred, label).tolist() == [[0, 1, 2, 1]]


def test_class_colours_are_distinct_and_background_is_transparent():
    colours = class_colours(8)
    assert colours[0][3] == 0 and len({c[:3] for c in colours[1:]}) == 7


def test_overlay_figure_renders_names_and_never_flipped_voxels():
    rng = np.random.default_rng(0)
    label = np.zeros((16, 16), np.uint8)
    label[4:10, 4:10] = 1
    flips = np.full((16, 16), np.inf)
    flips[4:6, 4:6] = 0.3
    overlay = {
        "image": rng.random((16, 16)).astype(np.float32),
        "label": label,
        "clean": label,
        "pred__pgd-l2": np.zeros_like(label),
        "delta__pgd-l2": rng.normal(size=(16, 16)).astype(np.float32) * 0.01,
        "flips__pgd-l2": flips,
        "meta": {"case": "c$1$", "slice": 3, "attacks": [{"attack": "pgd-l2", "eps": 0.5}], "labels": {"1": "lung"}},
    }
    png = overlay_figure(overlay, "run")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
