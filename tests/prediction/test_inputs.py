"""Finding the images to segment: files, folders, data set layouts, nnU-Net channel files."""

from __future__ import annotations

from pathlib import Path

import pytest

from imaseg.data.errors import DataError
from imaseg.prediction import find_images


def _touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


@pytest.mark.parametrize(
    ("name", "files", "expected"),
    [
        ("flat folder", ["a.nii.gz", "b.nii"], ["a", "b"]),
        ("imagesTs before imagesTr", ["imagesTs/t.nii.gz", "imagesTr/x.nii.gz", "labelsTr/x.nii.gz"], ["t"]),
        ("imagesTr without imagesTs", ["imagesTr/x.nii.gz", "labelsTr/x.nii.gz"], ["x"]),
        ("images/", ["images/y.nii.gz", "labels/y.nii.gz"], ["y"]),
        ("other files ignored", ["a.nii.gz", "notes.txt", ".hidden.nii.gz"], ["a"]),
    ],
)
def test_layouts(tmp_path, name, files, expected):
    _touch(*(tmp_path / f for f in files))
    assert [e["case"] for e in find_images(tmp_path)] == expected


def test_one_file(tmp_path):
    _touch(tmp_path / "scan.nii.gz")
    assert find_images(tmp_path / "scan.nii.gz") == [{"image": str(tmp_path / "scan.nii.gz"), "case": "scan"}]


def test_channel_files_form_one_case(tmp_path):
    _touch(*(tmp_path / "imagesTs" / f"c_{k:04d}.nii.gz" for k in range(3)))
    (entry,) = find_images(tmp_path)
    assert entry["case"] == "c" and [Path(p).name for p in entry["image"]] == [f"c_{k:04d}.nii.gz" for k in range(3)]


@pytest.mark.parametrize(
    ("name", "files", "message"),
    [
        ("uneven channels", ["a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz"], "different numbers of channel files"),
        ("same case twice", ["a.nii", "a.nii.gz"], "the same case as .nii and .nii.gz"),
        ("nothing", ["notes.txt"], "no images"),
    ],
)
def test_errors_name_the_folder(tmp_path, name, files, message):
    _touch(*(tmp_path / f for f in files))
    with pytest.raises(DataError, match=message):
        find_images(tmp_path)
