"""CaseStore: cases, splits and in-memory sample sets from a cache; the slice helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from imaseg.cache.reader import CaseStore, from_slices, to_slices
from imaseg.cache.writer import preprocess_dataset
from imaseg.data.errors import DataError
from imaseg.transforms.chain import PreprocessConfig


@pytest.fixture
def cache(msd_folder, tmp_path):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, PreprocessConfig(spatial_size=[16, 12], folds=2), progress=False)
    return out


def test_properties_come_from_the_manifest(cache):
    store = CaseStore(cache)
    assert store.num_classes == 3
    assert store.in_channels == 1
    assert store.spatial_dims == 2
    assert store.labels == {0: "background", 1: "a", 2: "b"}
    assert store.case_ids("all") == ["p01_frame01", "p01_frame09", "p02_frame01", "p02_frame11"]


def test_fold_splits_partition_the_cases_by_patient(cache):
    store = CaseStore(cache)
    for fold in (0, 1):
        train, val, test = (store.case_ids(split, fold) for split in ("train", "val", "test"))
        assert sorted(train + val + test) == store.case_ids("all")
        assert {c[:3] for c in train + val}.isdisjoint({c[:3] for c in test})
    assert store.case_ids("test", 0) == store.case_ids("train", 1)


def test_samples_shapes_dtypes_and_ids(cache):
    store = CaseStore(cache)
    samples = store.samples("train", 0)
    cases = store.case_ids("train", 0)
    assert len(samples) == 6 * len(cases)
    assert tuple(samples.images.shape) == (len(samples), 1, 16, 12)
    assert tuple(samples.labels.shape) == (len(samples), 1, 16, 12)
    assert samples.images.dtype == torch.float32 and samples.labels.dtype == torch.uint8
    assert samples.ids[:6] == [f"{cases[0]}:{i:03d}" for i in range(6)]
    assert samples.cases == [c for c in cases for _ in range(6)]
    assert set(samples.labels.unique().tolist()) == {0, 1, 2}


def test_samples_are_the_slices_of_the_cached_volume(cache):
    store = CaseStore(cache)
    samples = store.samples("test", 1)
    case = store.load_case(samples.cases[0])
    assert case.image.shape == (1, 16, 12, 6) and case.label.shape == (16, 12, 6)
    for i in range(6):
        np.testing.assert_array_equal(samples.images[i].numpy(), case.image[..., i])
        np.testing.assert_array_equal(samples.labels[i, 0].numpy(), case.label[..., i])
    assert case.affine.shape == (4, 4) and case.source_affine.shape == (4, 4)
    np.testing.assert_allclose(np.diag(case.source_affine)[:3], [1.5, 1.5, 5.0])


@pytest.mark.parametrize("slice_axis", [0, 1, 2], ids=["axis0", "axis1", "axis2"])
def test_slices_round_trip(slice_axis):
    volume = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    slices = to_slices(volume, slice_axis)
    assert slices.shape[0] == volume.shape[slice_axis + 1] and slices.shape[1] == 2
    np.testing.assert_array_equal(slices[1], np.take(volume, 1, axis=slice_axis + 1))
    np.testing.assert_array_equal(from_slices(slices, slice_axis), volume)
    tensor = torch.from_numpy(volume)
    torch.testing.assert_close(to_slices(tensor, slice_axis), torch.from_numpy(slices))
    torch.testing.assert_close(from_slices(to_slices(tensor, slice_axis), slice_axis), tensor)


def test_missing_manifest_says_what_to_run(tmp_path):
    with pytest.raises(DataError, match=r"no manifest.json; run `imaseg preprocess --data DIR --out"):
        CaseStore(tmp_path)


@pytest.mark.parametrize(
    ("split", "fold", "match"),
    [
        ("holdout", 0, "unknown split 'holdout'; choose one of train, val, test, all"),
        ("train", 2, r"`fold` must be one of \[0, 1\], got 2"),
    ],
    ids=["unknown-split", "missing-fold"],
)
def test_bad_split_or_fold(cache, split, fold, match):
    with pytest.raises(ValueError, match=match):
        CaseStore(cache).case_ids(split, fold)


def test_unknown_case(cache):
    with pytest.raises(KeyError, match="case 'p09' is not in"):
        CaseStore(cache).load_case("p09")


def test_empty_split_raises(cache):
    store = CaseStore(cache)
    assert store.case_ids("val", 0) == []  # two patients: one tested, one trained on
    with pytest.raises(DataError, match="split 'val' of fold 0 holds no samples"):
        store.samples("val", 0)


def test_corrupt_case_file_names_it(cache):
    path = cache / "cases" / "p01_frame09.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"p01_frame09.npz: cached case is unreadable .*rerun `imaseg preprocess`"):
        CaseStore(cache).load_case("p01_frame09")


def test_manifest_is_plain_json(cache):
    manifest = json.loads((cache / "manifest.json").read_text())
    assert CaseStore(cache).manifest.to_json() == manifest
