"""NRRD, MetaImage and DICOM series read through SimpleITK into the same geometry nibabel gives a NIfTI."""

from __future__ import annotations

import locale
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from imaseg.data.errors import DataError
from imaseg.data.images import read_image
from imaseg.data.nifti import read_nifti

sitk = pytest.importorskip("SimpleITK", reason="SimpleITK is in the test extra")


@pytest.fixture(autouse=True)
def _keep_the_locale():
    """SimpleITK's DICOM writer (used here to make test series) leaves the process locale at "C"."""
    saved = locale.setlocale(locale.LC_ALL, None)
    yield
    locale.setlocale(locale.LC_ALL, saved)


def test_reading_a_dicom_series_leaves_the_process_locale_alone(tmp_path, rng):
    _write_dicom_series(tmp_path / "series", rng.integers(0, 9, size=(8, 8, 3)).astype(np.int16), (1, 1, 2), (0, 0, 0))
    locale.setlocale(locale.LC_ALL, "C.UTF-8")
    read_image(tmp_path / "series")
    assert locale.setlocale(locale.LC_CTYPE, None) == "C.UTF-8"


def _oblique_nifti(path: Path, rng) -> Path:
    angle = np.deg2rad(15.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 1.3, 4.0])
    affine[:3, 3] = [10.0, -5.0, 2.5]
    array = rng.integers(-500, 500, size=(12, 10, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nhdr", ".mhd"])
def test_nrrd_and_metaimage_match_the_nifti_they_were_converted_from(tmp_path, rng, suffix):
    nifti = read_nifti(_oblique_nifti(tmp_path / "scan.nii.gz", rng))
    converted = tmp_path / f"scan{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "scan.nii.gz")), str(converted))
    volume = read_image(converted)
    np.testing.assert_array_equal(volume.array, nifti.array)
    np.testing.assert_allclose(volume.affine, nifti.affine, atol=1e-4)
    assert volume.spacing == pytest.approx(nifti.spacing) and volume.orientation == nifti.orientation


def _write_dicom_series(folder: Path, array: np.ndarray, spacing, origin, series: str = "1.2.3.4.5") -> sitk.Image:
    """Write ``array`` (x, y, z) as one DICOM file per slice; returns the image written."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array.transpose(2, 1, 0))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for k in range(array.shape[2]):
        piece = image[:, :, k]
        tags = {
            "0008|0060": "MR",
            "0020|000d": "1.2.3.4",
            "0020|000e": series,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))),
            "0020|0037": "\\".join(
                map(str, (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7]))
            ),
            "0008|0018": f"{series}.{k + 1}",
        }
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(piece)
    return image


def test_a_dicom_series_folder_reads_as_one_volume_in_ras(tmp_path, rng):
    array = rng.integers(0, 1000, size=(16, 12, 6)).astype(np.int16)
    _write_dicom_series(tmp_path / "series", array, (0.7, 0.9, 3.0), (-40.0, 20.0, 7.0))
    volume = read_image(tmp_path / "series")
    np.testing.assert_array_equal(volume.array, array)
    expected = np.diag([-0.7, -0.9, 3.0, 1.0])  # LPS (identity direction) seen in RAS: x and y flip sign
    expected[:3, 3] = [40.0, -20.0, 7.0]
    np.testing.assert_allclose(volume.affine, expected, atol=1e-4)
    assert volume.orientation == "LPS"


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("two series", "two_series", "holds 2 DICOM series; put each series in a folder of its own"),
        ("vector pixels", "vector", "3 components per pixel"),
        ("corrupt", "corrupt", "SimpleITK cannot read it"),
    ],
)
def test_unreadable_inputs_are_named(tmp_path, rng, name, make, message):
    if make == "two_series":
        array = rng.integers(0, 100, size=(8, 8, 3)).astype(np.int16)
        _write_dicom_series(tmp_path / "mixed", array, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), series="1.2.3.4.5")
        _write_dicom_series(tmp_path / "other", array, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), series="1.2.3.4.6")
        for file in (tmp_path / "other").iterdir():
            file.rename(tmp_path / "mixed" / f"b_{file.name}")
        target = tmp_path / "mixed"
    elif make == "vector":
        target = tmp_path / "rgb.mha"
        sitk.WriteImage(sitk.Image([8, 8], sitk.sitkVectorUInt8, 3), str(target))
    else:
        target = tmp_path / "broken.nrrd"
        target.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n\x00\x01")
    with pytest.raises(DataError, match=message) as error:
        read_image(target)
    assert str(target) in error.value.paths


def test_predict_takes_nrrd_and_dicom_and_writes_nifti_on_their_grids(tiny_run, tiny_data, tmp_path):
    from imaseg.prediction import predict

    source = sorted((tiny_data / "imagesTr").iterdir())[0]
    (tmp_path / "inputs").mkdir()
    sitk.WriteImage(sitk.ReadImage(str(source)), str(tmp_path / "inputs" / "scan.nrrd"))
    array = np.asarray(nib.load(source).dataobj)
    _write_dicom_series(
        tmp_path / "inputs" / "series", np.round(array * 1000).astype(np.int16), (1.6, 1.6, 8.0), (0.0, 0.0, 0.0)
    )
    sizes = predict(tiny_run, tmp_path / "inputs", tmp_path / "out", progress=False)
    assert set(sizes) == {"scan", "series"}
    for case, reference in (("scan", tmp_path / "inputs" / "scan.nrrd"), ("series", tmp_path / "inputs" / "series")):
        written = nib.load(tmp_path / "out" / f"{case}.nii.gz")
        volume = read_image(reference)
        assert written.shape == volume.shape
        np.testing.assert_allclose(written.affine, volume.affine, atol=1e-4)


def test_check_and_preprocess_take_nrrd_pairs(tmp_path, rng):
    from imaseg.data.check import check_dataset

    for case in ("a", "b"):
        image = sitk.GetImageFromArray(rng.normal(size=(4, 16, 16)).astype(np.float32))
        label_array = np.zeros((4, 16, 16), np.uint8)
        label_array[:, 4:9, 4:9] = 1
        label = sitk.GetImageFromArray(label_array)
        for item in (image, label):
            item.SetSpacing((1.2, 1.2, 3.0))
        (tmp_path / "imagesTr").mkdir(exist_ok=True)
        (tmp_path / "labelsTr").mkdir(exist_ok=True)
        sitk.WriteImage(image, str(tmp_path / "imagesTr" / f"{case}.nrrd"))
        sitk.WriteImage(label, str(tmp_path / "labelsTr" / f"{case}.nrrd"))
    report = check_dataset(tmp_path, progress=False)
    assert report.ok, report.all_problems()
    assert [c.case for c in report.cases] == ["a", "b"]
    assert report.cases[0].spacing == pytest.approx((1.2, 1.2, 3.0))
