"""LoadNifti: channel-first MetaTensors whose affine carries the true spacing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import write_nifti
from monai.data import MetaTensor

from imaseg.data.errors import DataError
from imaseg.transforms.io import LoadNifti, LoadNiftid


def test_unit_sform_file_loads_with_true_spacing(tmp_path):
    array = np.arange(6 * 5 * 4, dtype=np.float32).reshape(6, 5, 4)
    image = nib.Nifti1Image(array, np.eye(4))
    image.header.set_zooms((2.0, 3.0, 4.0))
    image.set_sform(np.eye(4), code=2)
    image.set_qform(None, code=0)
    nib.save(image, str(tmp_path / "quirk.nii.gz"))
    out = LoadNifti()(tmp_path / "quirk.nii.gz")
    assert isinstance(out, MetaTensor)
    assert out.shape == (1, 6, 5, 4) and out.dtype == torch.float32
    np.testing.assert_allclose(out.affine.numpy(), np.diag([2.0, 3.0, 4.0, 1.0]))
    np.testing.assert_allclose(out.pixdim.numpy(), [2.0, 3.0, 4.0])
    assert out.meta["source_spacing"] == pytest.approx([2.0, 3.0, 4.0])
    assert out.meta["source_shape"] == [6, 5, 4]
    assert out.meta["filename_or_obj"] == str(tmp_path / "quirk.nii.gz")
    np.testing.assert_array_equal(out[0].numpy(), array)


def test_two_channels_are_stacked_in_order(tmp_path, rng):
    first, second = rng.normal(size=(2, 4, 3, 2)).astype(np.float32)
    paths = [write_nifti(tmp_path / "c_0000.nii.gz", first), write_nifti(tmp_path / "c_0001.nii.gz", second)]
    out = LoadNifti()([str(p) for p in paths])
    assert out.shape == (2, 4, 3, 2)
    np.testing.assert_array_equal(out[1].numpy(), second)


def test_2d_file_gets_a_3x3_affine(tmp_path):
    out = LoadNifti()(write_nifti(tmp_path / "x.nii.gz", np.ones((8, 6), np.uint8), (0.5, 0.25)))
    assert out.shape == (1, 8, 6)
    np.testing.assert_allclose(out.affine.numpy(), np.diag([0.5, 0.25, 1.0]))


def test_trailing_singleton_axis_is_dropped(tmp_path):
    out = LoadNifti()(write_nifti(tmp_path / "x.nii.gz", np.ones((4, 3, 2, 1), np.float32)))
    assert out.shape == (1, 4, 3, 2)


def test_channels_of_different_shapes_raise_naming_the_file(tmp_path):
    a = write_nifti(tmp_path / "a_0000.nii.gz", np.ones((4, 3, 2), np.float32))
    b = write_nifti(tmp_path / "a_0001.nii.gz", np.ones((4, 3, 5), np.float32))
    with pytest.raises(DataError, match=rf"{b}: shape \(4, 3, 5\) does not fit {a}"):
        LoadNifti()([a, b])


def test_dictionary_version_loads_labels_as_int64(tmp_path):
    image = write_nifti(tmp_path / "i.nii.gz", np.ones((4, 3, 2), np.float32))
    label = write_nifti(tmp_path / "l.nii.gz", np.full((4, 3, 2), 2, np.uint8))
    out = LoadNiftid(["image", "label"])({"image": str(image), "label": str(label), "case": "c"})
    assert out["image"].dtype == torch.float32
    assert out["label"].dtype == torch.int64 and int(out["label"].max()) == 2
    assert out["case"] == "c"
