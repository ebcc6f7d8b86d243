"""The integrity check: every bad-input kind is reported naming the file, by check_dataset, validate_case and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import make_pair, real_data, write_nifti

from imaseg.cli import main
from imaseg.data.check import check_dataset, format_report, inspect_case, validate_case
from imaseg.data.discover import discover_with_info
from imaseg.data.errors import DataError

SPACING = (1.5, 1.5, 5.0)


def _to_plain(root: Path) -> Path:
    (root / "dataset.json").unlink()
    return root


def _empty(root: Path) -> tuple[Path, str]:
    empty = root.parent / "empty"
    (empty / "imagesTr").mkdir(parents=True)
    (empty / "labelsTr").mkdir()
    return empty, str(empty)


def _unpaired(root: Path) -> tuple[Path, str]:
    _to_plain(root)
    (root / "labelsTr" / "p01_frame09.nii.gz").unlink()
    (root / "imagesTr" / "p02_frame11.nii.gz").unlink()
    return root, str(root / "imagesTr" / "p01_frame09.nii.gz")


def _duplicate(root: Path) -> tuple[Path, str]:
    _to_plain(root)
    write_nifti(root / "imagesTr" / "p01_frame01.nii", np.zeros((24, 20, 6), np.float32), SPACING)
    return root, str(root / "imagesTr" / "p01_frame01.nii")


def _non_nifti(root: Path) -> tuple[Path, str]:
    _to_plain(root)
    (root / "imagesTr" / "p01_frame01.png").write_bytes(b"\x89PNG\r\n")
    return root, str(root / "imagesTr" / "p01_frame01.png")


def _truncated(root: Path) -> tuple[Path, str]:
    path = root / "imagesTr" / "p02_frame01.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return root, str(path)


def _rewrite_label(root: Path, array=None, spacing=SPACING, affine=None) -> str:
    path = root / "labelsTr" / "p01_frame09.nii.gz"
    if array is None:
        array = np.asarray(nib.load(str(path)).dataobj)
    write_nifti(path, array, spacing, affine)
    return str(path)


def _shape(root: Path) -> tuple[Path, str]:
    return root, _rewrite_label(root, np.zeros((24, 20, 5), np.uint8))


def _spacing(root: Path) -> tuple[Path, str]:
    return root, _rewrite_label(root, spacing=(1.5, 1.5, 6.0))


def _origin(root: Path) -> tuple[Path, str]:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [0.0, 3.0, 0.0]
    return root, _rewrite_label(root, affine=affine)


def _undeclared(root: Path) -> tuple[Path, str]:
    label = np.zeros((24, 20, 6), np.uint8)
    label[3:6, 3:6, 2] = 7
    return root, _rewrite_label(root, label)


def _probability(root: Path) -> tuple[Path, str]:
    return root, _rewrite_label(root, np.full((24, 20, 6), 0.5, np.float32))


def _nan(root: Path) -> tuple[Path, str]:
    image = np.zeros((24, 20, 6), np.float32)
    image[1, 2, 3] = np.nan
    image[4, 5, 1] = np.inf
    path = write_nifti(root / "imagesTr" / "p01_frame09.nii.gz", image, SPACING)
    return root, str(path)


def _four_d(root: Path) -> tuple[Path, str]:
    path = write_nifti(root / "imagesTr" / "p01_frame09.nii.gz", np.zeros((24, 20, 6, 3), np.float32), SPACING)
    return root, str(path)


def _label_four_d(root: Path) -> tuple[Path, str]:
    return root, _rewrite_label(root, np.zeros((24, 20, 6, 2), np.uint8))


# (builder, the case whose row is flagged or None for folder-level problems, message regex)
BAD_INPUTS = {
    "empty-folder": (_empty, None, "no image/label pairs found"),
    "unpaired": (_unpaired, None, r"Images without a label \(1\).*Labels without an image \(1\).*p02_frame11"),
    "duplicate-id": (_duplicate, None, r"duplicate case ids \['p01_frame01'\]"),
    "non-nifti": (_non_nifti, None, "non-image files among the images/labels"),
    "truncated": (_truncated, "p02_frame01", "truncated or corrupt"),
    "shape-mismatch": (_shape, "p01_frame09", r"label shape \(24, 20, 5\) does not match image shape \(24, 20, 6\)"),
    "spacing-mismatch": (
        _spacing,
        "p01_frame09",
        r"label spacing 1.5 x 1.5 x 6 mm differs from the image's 1.5 x 1.5 x 5",
    ),
    "origin-mismatch": (_origin, "p01_frame09", r"label affine differs from the image's .*origin off by 3 mm"),
    "undeclared-label": (_undeclared, "p01_frame09", r"label values \[7\] are not among the dataset.json labels"),
    "probability-label": (_probability, "p01_frame09", "label holds non-integer values"),
    "nan-inf": (_nan, "p01_frame09", "2 NaN/Inf voxels"),
    "4d-image": (_four_d, "p01_frame09", r"image is 4D \(24, 20, 6, 3\) where 3D was expected"),
    "4d-label": (_label_four_d, "p01_frame09", r"label is 4D \(24, 20, 6, 2\); labels must be 2D or 3D"),
}


@pytest.fixture(params=list(BAD_INPUTS), ids=list(BAD_INPUTS))
def bad_input(request, msd_folder):
    build, case, match = BAD_INPUTS[request.param]
    root, named = build(msd_folder)
    return root, named, case, match


def test_check_dataset_reports_each_bad_input_naming_the_file(bad_input):
    root, named, case, match = bad_input
    report = check_dataset(root)
    assert not report.ok
    if case is None:
        assert report.cases == []
        assert len(report.problems) == 1
        problem = report.problems[0]
    else:
        assert report.problems == []
        flagged = {c.case: c.problems for c in report.cases if c.problems}
        assert list(flagged) == [case]
        problem = flagged[case][0]
    assert named in problem
    assert re.search(match, problem), problem
    assert report.all_problems() == [problem]


def test_validate_case_raises_on_case_level_problems(bad_input):
    root, named, case, match = bad_input
    if case is None:
        with pytest.raises(DataError, match=match) as info:
            discover_with_info(root)
        assert named in str(info.value)
        return
    datalist, info_ = discover_with_info(root)
    entry = next(e for e in datalist if e["case"] == case)
    with pytest.raises(DataError, match=match) as info:
        validate_case(entry, info_)
    assert named in str(info.value)
    assert info.value.paths == [entry["image"], entry["label"]]


def test_check_cli_exits_1_and_names_the_case(bad_input, capsys):
    root, named, case, match = bad_input
    assert main(["check", str(root)]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s):" in out
    assert named in out
    if case is not None:
        row = next(line for line in out.splitlines() if line.startswith(case))
        assert row.endswith("<-- problem")
        assert sum("<-- problem" in line for line in out.splitlines()) == 1


def test_clean_folder_passes(msd_folder, capsys):
    report = check_dataset(msd_folder)
    assert report.ok and report.all_problems() == []
    case = report.cases[0]
    assert case.case == "p01_frame01"
    assert case.shape == (24, 20, 6)
    assert case.spacing == pytest.approx(SPACING)
    assert case.orientation == "RAS"
    assert case.dtype == "float32"
    assert set(case.label_counts) == {0, 1, 2}
    assert sum(case.label_counts.values()) == 24 * 20 * 6

    assert main(["check", str(msd_folder)]) == 0
    out = capsys.readouterr().out
    assert "layout msd, 4 cases, modality MRI, labels 0=background, 1=a, 2=b" in out
    row = next(line for line in out.splitlines() if line.startswith("p02_frame11"))
    assert "24x20x6" in row and "1.5 x 1.5 x 5" in row and "<-- problem" not in row
    assert "summary: 4/4 cases fine" in out
    assert out.rstrip().endswith("0 problem(s): the data set is ready")


def test_check_cli_writes_json_report(msd_folder, tmp_path, capsys):
    _undeclared(msd_folder)
    target = tmp_path / "report.json"
    assert main(["check", str(msd_folder), "--json", str(target)]) == 1
    capsys.readouterr()
    data = json.loads(target.read_text())
    assert data["ok"] is False
    assert len(data["problems"]) == 1 and "p01_frame09" in data["problems"][0]
    assert [c["case"] for c in data["cases"]] == ["p01_frame01", "p01_frame09", "p02_frame01", "p02_frame11"]


def test_spacing_within_tolerance_is_fine(msd_folder):
    _rewrite_label(msd_folder, spacing=(1.5, 1.5, 5.0 * (1 + 1e-4)))
    assert check_dataset(msd_folder).ok


def test_trailing_singleton_axis_is_not_4d(msd_folder, rng):
    image, _ = make_pair(rng)
    write_nifti(msd_folder / "imagesTr" / "p01_frame09.nii.gz", image[..., None], SPACING)
    assert check_dataset(msd_folder).ok


def test_negative_labels_without_declared_names(msd_folder):
    _to_plain(msd_folder)
    label = np.zeros((24, 20, 6), np.int16)
    label[0, 0, 0] = -1
    named = _rewrite_label(msd_folder, label)
    report = check_dataset(msd_folder)
    assert report.all_problems() == [
        f"{named}: label values [-1] are not among the non-negative class indices; fix the json or the label map"
    ]


def test_two_channel_case_with_mismatched_channel_spacing(tmp_path, rng):
    root = tmp_path / "Dataset050_Two"
    image, label = make_pair(rng)
    write_nifti(root / "imagesTr" / "c_001_0000.nii.gz", image, SPACING)
    write_nifti(root / "imagesTr" / "c_001_0001.nii.gz", image, (1.5, 1.5, 3.0))
    write_nifti(root / "labelsTr" / "c_001.nii.gz", label, SPACING)
    meta = {"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, "a": 1, "b": 2}}
    (root / "dataset.json").write_text(json.dumps(meta))
    report = check_dataset(root)
    assert report.cases[0].channels == 2
    (problem,) = report.all_problems()
    assert problem.startswith(f"{root / 'imagesTr' / 'c_001_0001.nii.gz'}: channel spacing 1.5 x 1.5 x 3 mm")
    assert "(2ch)" in format_report(report)


def test_unit_sform_file_is_reported_with_true_spacing(tmp_path, rng):
    root = tmp_path / "quirk"
    image, label = make_pair(rng)
    for folder, array in (("imagesTr", image), ("labelsTr", label)):
        nifti = nib.Nifti1Image(array, np.eye(4))
        nifti.header.set_zooms((2.0, 3.0, 4.0))
        nifti.set_sform(np.eye(4), code=2)
        nifti.set_qform(None, code=0)
        (root / folder).mkdir(parents=True)
        nib.save(nifti, str(root / folder / "c1.nii.gz"))
    report = check_dataset(root)
    assert report.ok
    assert report.cases[0].spacing == pytest.approx((2.0, 3.0, 4.0))
    text = format_report(report)
    assert "2 x 3 x 4" in next(line for line in text.splitlines() if line.startswith("c1"))
    assert "note: 1 case(s) have a unit-scale sform and the true spacing in pixdim" in text


def test_inspect_case_never_raises(msd_folder):
    _truncated(msd_folder)
    datalist, info = discover_with_info(msd_folder)
    report = inspect_case(next(e for e in datalist if e["case"] == "p02_frame01"), info)
    assert report.shape == () and len(report.problems) == 1


@pytest.mark.realdata
def test_check_real_headers_prints_true_spacing(capsys):
    root = real_data("acdc_real_headers")
    assert main(["check", str(root)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("patient110_fixed"))
    assert "224x224x18" in row and "1.562 x 1.562 x 10" in row and "LPS" in row
    assert "note: 8 case(s) have a unit-scale sform" in out
