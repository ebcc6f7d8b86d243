"""``imaseg.postprocess``: per foreground class only the largest connected component is kept (2D and 3D, one
map or a batch, arrays or tensors); ``none`` is the identity; a missing scikit-image is named with its fix."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from imaseg.postprocess import POSTPROCESSORS, check_postprocess, postprocess

pytest.importorskip("skimage", reason="lcc needs scikit-image (in the test extra)")


def _components(labels: np.ndarray, cls: int) -> int:
    """Connected components of class ``cls`` with full connectivity (as MONAI's transform counts them)."""
    return int(ndimage.label(labels == cls, structure=np.ones((3,) * labels.ndim))[1])


def _map_2d() -> np.ndarray:
    labels = np.zeros((12, 12), np.uint8)
    labels[1:6, 1:6] = 1  # class 1: a 25-voxel body ...
    labels[9, 9] = 1  # ... and a one-voxel island
    labels[7:11, 1:4] = 2  # class 2: a 12-voxel body ...
    labels[1:3, 9:11] = 2  # ... and a 4-voxel island
    return labels


def test_lcc_removes_every_classes_islands_in_2d():
    labels = _map_2d()
    kept = postprocess(labels, "lcc")
    assert kept.dtype == labels.dtype and kept.shape == labels.shape
    assert _components(kept, 1) == 1 and _components(kept, 2) == 1
    assert kept[9, 9] == 0 and (kept[1:3, 9:11] == 0).all(), "the islands become background"
    assert (kept[1:6, 1:6] == 1).all() and (kept[7:11, 1:4] == 2).all(), "the largest components stay whole"
    np.testing.assert_array_equal(labels, _map_2d(), err_msg="the input is not modified")


def test_lcc_is_per_class_so_touching_classes_are_not_one_component():
    labels = np.zeros((6, 10), np.uint8)
    labels[1:5, 1:4] = 1
    labels[1:5, 4:5] = 2  # class 2 touches class 1: still its own (largest) component
    np.testing.assert_array_equal(postprocess(labels, "lcc"), labels)


def test_lcc_connects_in_3d_across_slices():
    """A volume is one 3D map: a blob continued on the next slice stays; an island two slices away goes."""
    labels = np.zeros((4, 8, 8), np.int64)
    labels[0, 2:5, 2:5] = 1
    labels[1, 3:6, 3:6] = 1  # overlaps slice 0 in-plane: the same 3D component
    labels[3, 7, 7] = 1  # not touching anything of class 1
    labels[3, 0:2, 0:2] = 2  # class 2's only component, far from class 1's body: kept
    kept = postprocess(labels, "lcc")
    assert kept[0].sum() == labels[0].sum() and kept[1].sum() == labels[1].sum()
    assert kept[3, 7, 7] == 0 and (kept[3, 0:2, 0:2] == 2).all()
    assert _components(kept, 1) == 1


def test_a_batch_is_processed_map_by_map_and_keeps_tensor_dtype():
    batch = torch.from_numpy(np.stack([_map_2d(), np.zeros((12, 12), np.uint8)])).long()
    kept = postprocess(batch, "lcc", spatial_dims=2)
    assert isinstance(kept, torch.Tensor) and kept.dtype == torch.int64 and kept.shape == batch.shape
    np.testing.assert_array_equal(kept[0].numpy(), postprocess(_map_2d(), "lcc"))
    assert not kept[1].any()


def test_none_is_the_identity():
    labels = _map_2d()
    assert postprocess(labels, "none") is labels
    assert set(POSTPROCESSORS) == {"none", "lcc", "lcc2"}


@pytest.mark.parametrize(
    "name,shape,message",
    [
        pytest.param("largest", (4, 4), r"unknown `postprocess` 'largest'; choose one of none, lcc", id="unknown"),
        pytest.param("lcc", (5,), r"`labels` must have 2 or 3 spatial axes, got shape \(5,\)", id="1d"),
    ],
)
def test_bad_arguments_are_named(name, shape, message):
    with pytest.raises(ValueError, match=message):
        postprocess(np.zeros(shape, np.uint8), name)


def test_a_missing_scikit_image_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # `import skimage...` raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with pytest.raises(ValueError, match=r'`postprocess` \'lcc\' needs scikit-image.*pip install "imaseg\[lcc\]"'):
        check_postprocess("lcc")
    with pytest.raises(ValueError, match=r"pip install \"imaseg\[lcc\]\""):
        postprocess(_map_2d(), "lcc")
    assert check_postprocess("none") == "none", "none needs nothing"


def test_lcc2_keeps_the_two_largest_components_of_each_class():
    lungs = np.zeros((8, 12), dtype=np.uint8)
    lungs[1:7, 1:4] = 1  # left lung (18 pixels)
    lungs[1:6, 7:10] = 1  # right lung (15 pixels)
    lungs[7, 11] = 1  # a spurious island
    kept = postprocess(lungs, "lcc2")
    assert kept.sum() == 33 and kept[7, 11] == 0
    assert postprocess(lungs, "lcc").sum() == 18, "lcc deletes one lung of a paired organ labelled as one class"
