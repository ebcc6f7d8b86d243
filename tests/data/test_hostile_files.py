"""Hostile or broken NIfTI files and dataset.json files: each gets an error naming the file and the fix,
never a traceback, and never reads gigabytes first."""

from __future__ import annotations

import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import make_pair, write_nifti

from imaseg.data.check import check_dataset
from imaseg.data.discover import discover
from imaseg.data.errors import DataError
from imaseg.data.nifti import read_nifti


def _patched(path: Path, edit) -> Path:
    """Rewrite the header bytes of a .nii.gz (nibabel refuses to write such headers itself)."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    edit(raw)
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def _dims(*shape: int):
    return lambda raw: struct.pack_into("<8h", raw, 40, len(shape), *shape, *([1] * (7 - len(shape))))


def _sform(row_x):
    def edit(raw):
        struct.pack_into("<h", raw, 252, 0)  # qform_code 0
        struct.pack_into("<h", raw, 254, 1)  # sform_code 1
        struct.pack_into("<4f", raw, 280, *row_x)
        struct.pack_into("<4f", raw, 296, 0, 0, 0, 0)
        struct.pack_into("<4f", raw, 312, 0, 0, 0, 0)

    return edit


def _small(tmp_path: Path, name: str = "x.nii.gz") -> Path:
    return write_nifti(tmp_path / name, np.zeros((4, 4, 4), np.int16))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            _dims(1200, 1200, 1200),
            r"truncated or corrupt: its header claims \(1200, 1200, 1200\) voxels",
            id="1200-cubed",
        ),
        pytest.param(
            _dims(4000, 4000, 4000),
            r"claims \(4000, 4000, 4000\) voxels \(119.2 GiB\), more than imaseg reads",
            id="4000-cubed",
        ),
        pytest.param(_sform((0, 0, 0, 0)), "affine is degenerate", id="zero-affine"),
        pytest.param(_sform((float("nan"), 0, 0, 0)), "affine holds NaN/Inf", id="nan-affine"),
    ],
)
def test_broken_headers_are_named_before_any_large_read(tmp_path, edit, message):
    path = _patched(_small(tmp_path), edit)
    with pytest.raises(DataError, match=message) as info:
        read_nifti(path)
    assert str(path) in str(info.value) and info.value.paths == [str(path)]


def test_rgb_nifti_is_refused(tmp_path):
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = write_nifti(tmp_path / "rgb.nii.gz", rgb)
    with pytest.raises(DataError, match=r"rgb\.nii\.gz: a colour \(RGB\) NIfTI"):
        read_nifti(path)


def test_pixdim_zero_takes_the_affine_spacing_and_says_so(tmp_path, caplog):
    path = write_nifti(tmp_path / "p.nii.gz", np.zeros((4, 4, 4), np.float32), (2.0, 1.0, 1.0))
    _patched(path, lambda raw: struct.pack_into("<f", raw, 80, 0.0))  # pixdim[1] = 0
    volume = read_nifti(path)
    assert volume.spacing == pytest.approx((2.0, 1.0, 1.0))
    assert "pixdim [0.0, 1.0, 1.0] holds 0" in volume.spacing_note and str(path) in caplog.text


def test_broken_and_looping_links_are_named(tmp_path):
    dangling, loop = tmp_path / "dangling.nii.gz", tmp_path / "loop.nii.gz"
    os.symlink(tmp_path / "gone.nii.gz", dangling)
    os.symlink(tmp_path / "loop2.nii.gz", loop)
    os.symlink(loop, tmp_path / "loop2.nii.gz")
    with pytest.raises(DataError, match=r"dangling\.nii\.gz: broken symbolic link \(it points to .*gone\.nii\.gz"):
        read_nifti(dangling)
    with pytest.raises(DataError, match=r"loop\.nii\.gz: cannot open .*symbolic link loop"):
        read_nifti(loop)


def _msd(root: Path, **meta) -> Path:
    rng = np.random.default_rng(0)
    for case in ("a", "b"):
        image, label = make_pair(rng)
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ("a", "b")]
    content = {"labels": {"0": "bg", "1": "x", "2": "y"}, "training": training, **meta}
    (root / "dataset.json").write_text(json.dumps(content))
    return root


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        pytest.param({"labels": ["bg", "x"]}, r"`labels` must be a JSON object like .*got list", id="labels-list"),
        pytest.param(
            {"training": "imagesTr/a.nii.gz"}, r"`training` must be a JSON list .*got str", id="training-string"
        ),
        pytest.param(
            {"training": [{"image": 12, "label": "./labelsTr/a.nii.gz"}]},
            "image must be a path string, got 12",
            id="number-path",
        ),
    ],
)
def test_malformed_dataset_json_is_named(tmp_path, meta, message):
    root = _msd(tmp_path / "data", **meta)
    with pytest.raises(DataError, match=message) as info:
        discover(root)
    assert "dataset.json" in str(info.value)


def test_non_utf8_dataset_json_is_named(tmp_path):
    root = _msd(tmp_path / "data")
    (root / "dataset.json").write_bytes('{"name": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"dataset\.json: not UTF-8 text .*save it as UTF-8"):
        discover(root)


@pytest.mark.parametrize("where", ["../outside", "absolute"])
def test_entries_outside_the_data_folder_are_refused_unless_allowed(tmp_path, where):
    root = _msd(tmp_path / "data")
    image, _ = make_pair(np.random.default_rng(1))
    outside = write_nifti(tmp_path / "outside" / "secret.nii.gz", image)
    listed = "../outside/secret.nii.gz" if where != "absolute" else str(outside)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][0]["image"] = listed
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(
        DataError, match=r"resolves to .*secret\.nii\.gz, outside the data folder .*--allow-outside-paths"
    ):
        discover(root)
    assert str(outside) in {entry["image"] for entry in discover(root, allow_outside_paths=True)}


def test_a_broken_link_in_a_folder_layout_is_named(tmp_path):
    root = tmp_path / "data"
    image, label = make_pair(np.random.default_rng(0))
    write_nifti(root / "imagesTr" / "a.nii.gz", image)
    write_nifti(root / "labelsTr" / "a.nii.gz", label)
    os.symlink(tmp_path / "gone.nii.gz", root / "imagesTr" / "b.nii.gz")
    with pytest.raises(DataError, match=r"broken symbolic links \[.*b\.nii\.gz'\]"):
        discover(root)


def test_one_bad_case_never_stops_the_check_of_the_others(tmp_path):
    root = _msd(tmp_path / "data")
    _patched(root / "imagesTr" / "a.nii.gz", _dims(1200, 1200, 1200))
    report = check_dataset(root)
    assert [c.case for c in report.cases] == ["a", "b"]
    assert report.cases[0].problems and "truncated or corrupt" in report.cases[0].problems[0]
    assert not report.cases[1].problems
