"""The embedded synthetic heart data: valid, complete, deterministic and anatomically nested."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imaseg.data.check import check_dataset
from imaseg.data.demo import DEMO_LABELS, _draw_anatomy, make_demo_case, write_demo_data
from imaseg.data.nifti import read_nifti

SHAPE = (32, 32, 4)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("demo"), patients=2, shape=SHAPE)


def _arrays(root, folder):
    return {p.name: read_nifti(p).array for p in sorted((root / folder).glob("*.nii.gz"))}


def test_demo_data_passes_the_check(demo_root):
    report = check_dataset(demo_root)
    assert report.ok, report.all_problems()
    assert report.info.labels == DEMO_LABELS
    assert report.info.modality == "MRI"
    assert report.cases[0].case == "patient001_frame01"
    assert len(report.cases) == 4
    assert all(c.shape == SHAPE for c in report.cases)
    assert all(c.spacing == pytest.approx((1.6, 1.6, 8.0)) for c in report.cases)
    assert all(0.0 <= c.intensity[0] and c.intensity[1] <= 1.0 for c in report.cases)


def test_demo_json_lists_two_phases_per_patient(demo_root):
    meta = json.loads((demo_root / "dataset.json").read_text())
    assert meta["numTraining"] == 4 and meta["tensorImageSize"] == "3D"
    cases = [entry["image"].split("/")[-1] for entry in meta["training"]]
    assert [c.split("_")[0] for c in cases] == ["patient001", "patient001", "patient002", "patient002"]
    assert cases[0] == "patient001_frame01.nii.gz" and cases[1] != cases[0]


def test_every_label_is_present_in_every_case(demo_root):
    for name, label in _arrays(demo_root, "labelsTr").items():
        assert set(np.unique(label)) == {0, 1, 2, 3}, name


def test_same_seed_same_arrays_other_seed_differs(demo_root, tmp_path):
    again = write_demo_data(tmp_path / "again", patients=2, shape=SHAPE)
    other = write_demo_data(tmp_path / "other", patients=2, shape=SHAPE, seed=1)
    for folder in ("imagesTr", "labelsTr"):
        first, second = _arrays(demo_root, folder), _arrays(again, folder)
        assert list(first) == list(second)
        for name in first:
            np.testing.assert_array_equal(first[name], second[name])
    first_image = _arrays(demo_root, "imagesTr")["patient001_frame01.nii.gz"]
    other_image = _arrays(other, "imagesTr")["patient001_frame01.nii.gz"]
    assert not np.allclose(first_image, other_image)


def test_left_ventricle_is_enclosed_by_myocardium(demo_root):
    for name, label in _arrays(demo_root, "labelsTr").items():
        mid = label[..., SHAPE[2] // 2]
        lv = np.argwhere(mid == 3)
        assert len(lv), name
        for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            neighbours = mid[lv[:, 0] + dx, lv[:, 1] + dy]
            assert np.isin(neighbours, (2, 3)).all(), f"{name}: LV touches {set(neighbours.tolist())}"


def test_left_ventricle_is_brighter_than_myocardium():
    image, label = make_demo_case(np.random.default_rng(3), shape=SHAPE)
    assert image.dtype == np.float32 and label.dtype == np.uint8
    assert image[label == 3].mean() > image[label == 2].mean() + 0.2


def test_systole_shrinks_the_left_ventricle():
    rng = np.random.default_rng(5)
    anatomy = _draw_anatomy(rng, SHAPE)
    _, diastole = make_demo_case(rng, SHAPE, systole=False, anatomy=anatomy)
    _, systole = make_demo_case(rng, SHAPE, systole=True, anatomy=anatomy)
    assert (systole == 3).sum() < (diastole == 3).sum()


def test_rewriting_replaces_files_in_place(demo_root):
    before = sorted(p.name for p in (demo_root / "imagesTr").iterdir())
    write_demo_data(demo_root, patients=2, shape=SHAPE)
    assert sorted(p.name for p in (demo_root / "imagesTr").iterdir()) == before  # no temporaries left


def test_fewer_than_two_patients_is_refused(tmp_path):
    with pytest.raises(ValueError, match="`patients` must be >= 2, got 1"):
        write_demo_data(tmp_path, patients=1)
