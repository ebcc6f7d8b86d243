"""The preprocessing chain per modality: which intensity mode, orientation, resampling, fitting; CT on real HU."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from helpers import real_data, write_nifti

from imaseg.transforms.chain import PreprocessConfig, build_preprocessing, resolve_intensity, resolve_modality


@pytest.mark.parametrize(
    ("configured", "declared", "expected"),
    [
        ("auto", "MRI", "mri"),
        ("auto", "MR", "mri"),
        ("auto", " CT ", "ct"),
        ("auto", "X-ray", "xray"),
        ("auto", "DX", "xray"),
        ("auto", "image", "other"),
        ("auto", "", "other"),
        ("ct", "MRI", "ct"),
    ],
    ids=["mri", "mr", "ct-padded", "x-ray", "dx", "unknown", "undeclared", "config-wins"],
)
def test_resolve_modality(configured, declared, expected):
    assert resolve_modality(PreprocessConfig(modality=configured), declared) == expected


@pytest.mark.parametrize(
    ("intensity", "modality", "mode", "source_range"),
    [
        ("auto", "mri", "zscore", [-1000.0, 400.0]),
        ("auto", "ct", "window", [-1000.0, 400.0]),
        ("auto", "xray", "range", [0.0, 255.0]),
        ("auto", "other", "none", [-1000.0, 400.0]),
        ("percentile", "ct", "percentile", [-1000.0, 400.0]),
        ("range", "xray", "range", [-1000.0, 400.0]),
    ],
    ids=["mri-zscore", "ct-window", "xray-range", "other-none", "explicit-percentile", "explicit-range-uses-window"],
)
def test_resolve_intensity(intensity, modality, mode, source_range):
    kwargs = resolve_intensity(PreprocessConfig(intensity=intensity), modality)
    assert kwargs["mode"] == mode
    assert kwargs["source_range"] == source_range
    assert kwargs["target_range"] == [0.0, 1.0]


def write_lps_case(root, shape=(24, 20, 6), spacing=(1.5, 1.5, 5.0)):
    image = np.zeros(shape, np.float32)
    image[0, 0, 0] = 100.0  # a marker in the voxel nearest (L, P, I)
    image[4:10, 4:10, :] = 50.0
    label = np.zeros(shape, np.uint8)
    label[4:10, 4:10, 1:4] = 1
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    return {
        "image": str(write_nifti(root / "img.nii.gz", image, affine=affine)),
        "label": str(write_nifti(root / "lab.nii.gz", label, affine=affine)),
    }


def test_orientation_flips_lps_to_ras(tmp_path):
    entry = write_lps_case(tmp_path)
    chain = build_preprocessing(PreprocessConfig(intensity="none", spatial_size=[]), "mri", 3)
    out = chain(entry)
    image = out["image"]
    assert image.shape == (1, 24, 20, 6)
    assert float(image[0, -1, -1, 0]) == 100.0 and float(image[0, 0, 0, 0]) == 0.0
    np.testing.assert_allclose(np.diag(image.affine.numpy())[:3], [1.5, 1.5, 5.0])
    assert out["label"].dtype == torch.int64
    assert torch.equal(out["label"][0, 14:20, 10:16, 1:4], torch.ones(6, 6, 3, dtype=torch.int64))


def test_orientation_none_keeps_the_grid(tmp_path):
    entry = write_lps_case(tmp_path)
    out = build_preprocessing(PreprocessConfig(intensity="none", orientation=None, spatial_size=[]), "mri", 3)(entry)
    assert float(out["image"][0, 0, 0, 0]) == 100.0


def test_resampling_keeps_an_axis_given_as_minus_one(tmp_path):
    entry = write_lps_case(tmp_path)
    config = PreprocessConfig(intensity="none", spacing=[3.0, 3.0, -1.0], spatial_size=[])
    image = build_preprocessing(config, "mri", 3)(entry)["image"]
    assert image.shape == (1, 12, 10, 6)
    np.testing.assert_allclose(image.pixdim.numpy(), [3.0, 3.0, 5.0])


def test_crop_foreground_crops_to_the_bright_box(tmp_path):
    entry = write_lps_case(tmp_path)
    image = np.zeros((24, 20, 6), np.float32)
    image[4:10, 3:15, 2:5] = 7.0
    write_nifti(tmp_path / "img.nii.gz", image, affine=np.diag([-1.5, -1.5, 5.0, 1.0]))
    config = PreprocessConfig(intensity="none", crop_foreground=True, spatial_size=[])
    out = build_preprocessing(config, "mri", 3)(entry)
    assert out["image"].shape == out["label"].shape == (1, 6, 12, 3)
    assert float(out["image"].min()) == 7.0


@pytest.mark.parametrize(
    ("mode", "size", "expected"),
    [("2d", [16, 16], (1, 16, 16, 6)), ("3d", [16, 16, 8], (1, 16, 16, 8))],
    ids=["2d-keeps-slices", "3d-fits-all-axes"],
)
def test_fit_to_size_per_mode(tmp_path, mode, size, expected):
    entry = write_lps_case(tmp_path)
    out = build_preprocessing(PreprocessConfig(mode=mode, spatial_size=size), "mri", 3)(entry)
    assert out["image"].shape == out["label"].shape == expected
    assert set(out["label"].unique().tolist()) <= {0, 1}


def test_mri_chain_zscores_the_nonzero_voxels(tmp_path):
    entry = write_lps_case(tmp_path)
    image = build_preprocessing(PreprocessConfig(spatial_size=[]), "mri", 3)(entry)["image"]
    values = np.array([50.0] * (6 * 6 * 6) + [100.0])
    assert image.meta["intensity_scale"] == pytest.approx(1 / values.std(ddof=1), rel=1e-5)
    assert image.meta["intensity_mode"] == "zscore"


def test_xray_chain_on_a_2d_file(tmp_path, rng):
    pixels = rng.integers(0, 256, (40, 30)).astype(np.uint8)
    entry = {
        "image": str(write_nifti(tmp_path / "x.nii.gz", pixels, (0.5, 0.5))),
        "label": str(write_nifti(tmp_path / "m.nii.gz", (pixels > 128).astype(np.uint8), (0.5, 0.5))),
    }
    out = build_preprocessing(PreprocessConfig(spatial_size=[16, 16]), "xray", 2)(entry)
    assert out["image"].shape == out["label"].shape == (1, 16, 16)
    assert out["image"].meta["intensity_scale"] == pytest.approx(1 / 255)
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0


@pytest.mark.realdata
def test_ct_window_on_real_hounsfield_units():
    root = real_data("lung_ct")
    entry = {"image": str(root / "imagesTr" / "lung1.nii.gz"), "label": str(root / "labelsTr" / "lung1.nii.gz")}
    config = PreprocessConfig(spatial_size=[])  # no fitting: voxels stay comparable one to one
    out = build_preprocessing(config, resolve_modality(config, "CT"), 3)(entry)
    image = out["image"][0].numpy()
    canonical = nib.as_closest_canonical(nib.load(entry["image"]))  # the file is LPS; the chain gives RAS
    hu = np.asarray(canonical.dataobj).astype(np.float32)
    assert image.shape == hu.shape
    np.testing.assert_allclose(image, np.clip((hu + 1000.0) / 1400.0, 0.0, 1.0), atol=1e-6)
    assert hu.min() <= -1000 and np.all(image[hu <= -1000] == 0.0)
    assert hu.max() >= 400 and np.all(image[hu >= 400] == 1.0)
    lung = np.asarray(nib.as_closest_canonical(nib.load(entry["label"])).dataobj) == 1
    assert 0.0 < float(np.median(image[lung])) < 0.3  # aerated lung is about -900..-700 HU
    assert out["image"].meta["intensity_scale"] == pytest.approx(1 / 1400)
    assert out["image"].meta["intensity_offset"] == pytest.approx(1000 / 1400)
