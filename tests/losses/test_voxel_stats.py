"""class_boundary and VoxelMarginStats on hand-made label maps: boundary vs interior, counts, histogram."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imaseg.losses import VoxelMarginStats, class_boundary

INF = float("inf")


def label_map() -> torch.Tensor:
    """7 x 7: class 1 a 4 x 4 square inside the image, class 2 a 1-voxel-wide stripe on the right edge."""
    label = torch.zeros(1, 7, 7, dtype=torch.long)
    label[0, 1:5, 1:5] = 1
    label[0, :, 6] = 2
    return label


def onehot(label: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(label, classes).movedim(-1, 1)


def test_class_boundary_is_the_one_voxel_rim_of_each_class():
    rim = class_boundary(onehot(label_map(), 3))
    square = torch.zeros(7, 7, dtype=torch.bool)
    square[1:5, 1:5] = True
    interior = torch.zeros(7, 7, dtype=torch.bool)
    interior[2:4, 2:4] = True
    assert torch.equal(rim[0, 1], square & ~interior)
    assert int(rim[0, 1].sum()) == 12
    assert int(rim[0, 2].sum()) == 7, "a stripe touching background everywhere is all boundary"


def test_the_image_border_is_not_another_class():
    label = torch.ones(1, 5, 5, dtype=torch.long)  # one class filling the image
    label[0, 0, 0] = 0  # one background voxel in a corner
    rim = class_boundary(onehot(label, 2))[0, 1]
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[0, 1] = expected[1, 0] = expected[1, 1] = True  # only the neighbours of that voxel
    assert torch.equal(rim, expected)


def test_class_boundary_in_3d():
    label = torch.zeros(1, 6, 6, 6, dtype=torch.long)
    label[0, 1:5, 1:5, 1:5] = 1
    rim = class_boundary(onehot(label, 2))
    assert int(rim[0, 1].sum()) == 4**3 - 2**3
    assert not rim[0, 1, 2:4, 2:4, 2:4].any()


def test_stats_count_voxels_clean_errors_flips_and_radii():
    label = label_map()
    clean_pred = label.clone()
    clean_pred[0, 2, 2] = 0  # an interior class-1 voxel already wrong on the clean input
    flip = torch.full((1, 7, 7), INF)
    flip[0, 1, 1] = 0.10  # class 1 rim
    flip[0, 1, 2] = 0.60  # class 1 rim
    flip[0, 2, 2] = 0.30  # the clean-wrong voxel: not a flip of a correct voxel
    flip[0, 3, 3] = 0.95  # class 1 interior
    flip[0, 0, 6] = 5.00  # class 2, beyond max_radius: counted in the last bin
    flip[0, 0, 0] = 0.20  # background: not reported
    stats = VoxelMarginStats(num_classes=3, max_radius=1.0, bins=4)
    stats.update(label, clean_pred, flip)
    stats.update(label, clean_pred, flip)  # accumulates

    assert stats.voxels.tolist() == [[0, 0], [24, 8], [14, 0]]
    assert stats.clean_wrong.tolist() == [[0, 0], [0, 2], [0, 0]]
    assert stats.flipped.tolist() == [[0, 0], [4, 2], [2, 0]]
    assert stats.histogram[1, 0].tolist() == [2, 0, 2, 0]  # radii 0.1 and 0.6, twice
    assert stats.histogram[1, 1].tolist() == [0, 0, 0, 2]
    assert stats.histogram[2, 0].tolist() == [0, 0, 0, 2]

    summary = stats.summary({1: "LV", 2: "RV"})
    assert summary["edges"] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert set(summary["classes"]) == {"LV", "RV"}
    lv = summary["classes"]["LV"]
    assert lv["boundary"]["flipped_fraction"] == pytest.approx(4 / 24)
    assert lv["interior"]["clean_wrong_fraction"] == pytest.approx(2 / 8)
    assert summary["classes"]["RV"]["interior"] == {
        "voxels": 0,
        "clean_wrong_fraction": 0.0,
        "flipped_fraction": 0.0,
        "radius_histogram": [0, 0, 0, 0],
    }

    stats.reset()
    assert int(stats.voxels.sum()) == 0 and int(stats.histogram.sum()) == 0
    assert "class 1" in stats.summary()["classes"], "unnamed classes get a default name"


def test_radii_are_binned_when_read_and_match_binning_each_batch_at_once():
    torch.manual_seed(0)
    label = torch.randint(0, 3, (2, 9, 9))
    clean_pred = torch.where(torch.rand(2, 9, 9) < 0.1, 0, label)
    flips = [torch.where(torch.rand(2, 9, 9) < 0.5, torch.rand(2, 9, 9) * 1.3, INF) for _ in range(3)]
    deferred = VoxelMarginStats(num_classes=3, max_radius=1.0, bins=5)
    for flip in flips:
        deferred.update(label, clean_pred, flip)
    expected = torch.zeros(3, 2, 5, dtype=torch.int64)
    rim = class_boundary(onehot(label, 3))
    for flip in flips:
        for c in (1, 2):
            for r, region in enumerate((rim[:, c], (label == c) & ~rim[:, c])):
                radii = flip[region & torch.isfinite(flip) & (clean_pred == label)]
                expected[c, r] += torch.histc(radii.clamp(max=1.0), bins=5, min=0.0, max=1.0).long()
    assert int(expected.sum()) > 0
    assert torch.equal(deferred.histogram, expected)
    assert torch.equal(deferred.flipped, expected.sum(-1))
