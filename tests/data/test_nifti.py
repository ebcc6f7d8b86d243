"""NIfTI reading with the true spacing: the unit-scale-sform quirk, 2D files, corrupt files, writing."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from helpers import real_data, write_nifti

from imaseg.data.errors import DataError
from imaseg.data.nifti import is_nifti, read_nifti, strip_nifti_suffix, true_affine
from imaseg.data.nifti import write_nifti as imaseg_write_nifti

sitk.ProcessObject.SetGlobalWarningDisplay(False)  # ITK warns "unexpected scales in sform" on the quirk files


def write_unit_sform_file(path: Path, shape=(6, 5, 4), pixdim=(2.0, 3.0, 4.0), sform=None) -> Path:
    """Reproduce the acdc_real_headers quirk: unit-scale sform (code 2), qform code 0, pixdim = true spacing."""
    sform = np.eye(4) if sform is None else sform
    image = nib.Nifti1Image(np.arange(np.prod(shape), dtype=np.float32).reshape(shape), sform)
    image.header.set_zooms(pixdim)
    image.set_sform(sform, code=2)
    image.set_qform(None, code=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def itk_spacing(path: Path) -> tuple[float, ...]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader.GetSpacing()


def test_synthetic_file_reproduces_the_unit_sform_quirk(tmp_path):
    path = write_unit_sform_file(tmp_path / "quirk.nii.gz")
    loaded = nib.load(str(path))
    np.testing.assert_allclose(np.linalg.norm(loaded.affine[:3, :3], axis=0), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(loaded.header.get_zooms(), [2.0, 3.0, 4.0])
    assert int(loaded.header["sform_code"]) == 2 and int(loaded.header["qform_code"]) == 0


def test_read_nifti_takes_spacing_from_pixdim_like_itk(tmp_path):
    path = write_unit_sform_file(tmp_path / "quirk.nii.gz")
    volume = read_nifti(path)
    assert volume.spacing == pytest.approx((2.0, 3.0, 4.0))
    assert volume.spacing == pytest.approx(itk_spacing(path))
    np.testing.assert_allclose(volume.affine[:3, :3], np.diag([2.0, 3.0, 4.0]))
    assert "disagrees with pixdim" in volume.spacing_note
    assert volume.orientation == "RAS"


def test_true_affine_keeps_direction_and_origin(tmp_path):
    sform = np.diag([-1.0, -1.0, 1.0, 1.0])
    sform[:3, 3] = [10.0, -20.0, 5.0]
    path = write_unit_sform_file(tmp_path / "lps.nii.gz", pixdim=(1.5, 1.5, 8.0), sform=sform)
    affine = true_affine(nib.load(str(path)))
    np.testing.assert_allclose(affine[:3, :3], np.diag([-1.5, -1.5, 8.0]))
    np.testing.assert_allclose(affine[:3, 3], [10.0, -20.0, 5.0])
    assert read_nifti(path).orientation == "LPS"


def test_consistent_file_has_no_spacing_note(tmp_path):
    path = write_nifti(tmp_path / "ok.nii.gz", np.zeros((4, 4, 3), np.float32), (0.7, 0.8, 3.0))
    volume = read_nifti(path)
    assert volume.spacing == pytest.approx((0.7, 0.8, 3.0))
    assert volume.spacing_note == ""


def test_2d_file_has_two_spacings_and_native_dtype(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(4, 3)
    volume = read_nifti(write_nifti(tmp_path / "xray.nii.gz", array, (0.2, 0.3)))
    assert volume.shape == (4, 3)
    assert volume.array.dtype == np.uint8
    assert volume.spacing == pytest.approx((0.2, 0.3))
    assert volume.orientation == "RA"


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("image.png", b"\x89PNG", "not a NIfTI file"),
        ("absent.nii.gz", None, "does not exist"),
        ("garbage.nii.gz", b"not a nifti at all" * 20, "truncated or corrupt"),
    ],
    ids=["png", "missing", "garbage"],
)
def test_read_nifti_rejects_bad_files_naming_them(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read_nifti(path)
    assert str(path) in str(info.value)
    assert info.value.paths == [str(path)]


@pytest.mark.parametrize("keep", [0.5, 0.02], ids=["half", "header-only"])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"], ids=["gz", "plain"])
def test_read_nifti_rejects_truncated_files(tmp_path, rng, suffix, keep):
    path = write_nifti(tmp_path / f"cut{suffix}", rng.normal(size=(24, 20, 6)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        read_nifti(path)
    assert str(path) in str(info.value)


def test_write_nifti_round_trips_array_and_affine(tmp_path, rng):
    affine = np.diag([-1.2, 0.9, 4.0, 1.0])
    affine[:3, 3] = [3.0, -7.0, 11.0]
    array = rng.normal(size=(5, 4, 3)).astype(np.float32)
    path = imaseg_write_nifti(tmp_path / "sub" / "out.nii.gz", array, affine)
    volume = read_nifti(path)
    np.testing.assert_array_equal(volume.array, array)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-6)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["out.nii.gz"]  # no temporary left behind
    assert itk_spacing(path) == pytest.approx((1.2, 0.9, 4.0))


@pytest.mark.parametrize(
    ("name", "nifti", "stem"),
    [("a.nii.gz", True, "a"), ("b.nii", True, "b"), ("c.png", False, "c.png"), ("d.nii.gz.bak", False, "d.nii.gz.bak")],
    ids=["nii.gz", "nii", "png", "backup"],
)
def test_suffix_helpers(name, nifti, stem):
    assert is_nifti(name) is nifti
    assert strip_nifti_suffix(name) == stem


@pytest.mark.realdata
def test_real_headers_spacing_matches_itk_for_every_file():
    root = real_data("acdc_real_headers")
    files = sorted(root.glob("*Tr/*.nii.gz"))
    assert len(files) == 16
    for path in files:
        volume = read_nifti(path)
        assert volume.spacing == pytest.approx(itk_spacing(path), rel=1e-6), path.name
        assert nib.load(str(path)).affine[0, 0] == pytest.approx(-1.0), f"{path.name} lost the quirk"


@pytest.mark.realdata
def test_real_patient110_spacing():
    volume = read_nifti(real_data("acdc_real_headers") / "imagesTr" / "patient110_fixed.nii.gz")
    assert volume.spacing == pytest.approx((1.5625, 1.5625, 10.0))
    assert volume.orientation == "LPS"
