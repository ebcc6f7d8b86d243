"""``preprocess_dataset``: manifest, stable sample ids, cache reuse and invalidation, 2D / 3D / multi-channel data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from helpers import make_pair, real_data, write_nifti

from imaseg.cache import writer
from imaseg.cache.manifest import MANIFEST_NAME, DatasetSource, sample_id
from imaseg.cache.reader import CaseStore
from imaseg.cache.writer import preprocess_dataset
from imaseg.config import to_dict
from imaseg.data.errors import DataError
from imaseg.transforms.chain import PreprocessConfig

CASES = ["p01_frame01", "p01_frame09", "p02_frame01", "p02_frame11"]


def small(**overrides) -> PreprocessConfig:
    return PreprocessConfig(**{"spatial_size": [16, 16], "folds": 2, **overrides})


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """Case ids that ``_preprocess_case`` really preprocessed (instead of reusing the cache)."""
    seen: list[str] = []
    original = writer._preprocess_case

    def counting(entry, *args, **kwargs):
        seen.append(entry["case"])
        return original(entry, *args, **kwargs)

    monkeypatch.setattr(writer, "_preprocess_case", counting)
    return seen


def add_msd_case(root: Path, case: str, image: np.ndarray, label: np.ndarray, spacing=(1.5, 1.5, 5.0)) -> None:
    write_nifti(root / "imagesTr" / f"{case}.nii.gz", image, spacing)
    write_nifti(root / "labelsTr" / f"{case}.nii.gz", label, spacing)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"].append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(meta))


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "cases").glob("*.npz"))}


def touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


@pytest.mark.parametrize(
    ("case", "index", "expected"),
    [("c", 7, "c:007"), ("c", 123, "c:123"), ("c", None, "c")],
    ids=["slice", "wide", "whole"],
)
def test_sample_id_format(case, index, expected):
    assert sample_id(case, index) == expected


def test_manifest_content(msd_folder, tmp_path):
    out = tmp_path / "cache"
    config = small()
    manifest = preprocess_dataset(msd_folder, out, config, progress=False)
    stored = json.loads((out / MANIFEST_NAME).read_text())
    assert stored == manifest.to_json()
    assert stored["splits"]["0"] == manifest.split(0).to_json() and stored["labels"]["1"] == "a"  # the file's keys
    assert manifest.num_classes == 3
    assert manifest.in_channels == 1
    assert manifest.spatial_dims == 2
    assert manifest.labels == {0: "background", 1: "a", 2: "b"}
    assert manifest.modality == "mri"
    assert manifest.dataset == DatasetSource("toy", "msd", "MRI")
    assert manifest.data_dir == str(msd_folder.resolve())
    assert manifest.config == to_dict(config)
    assert manifest.num_samples == 4 * 6
    assert sorted(manifest.splits) == [0, 1]
    cases = {c.case: c for c in manifest.cases}
    assert list(cases) == CASES
    assert {c: m.group for c, m in cases.items()} == dict(zip(CASES, ["p01", "p01", "p02", "p02"]))
    for fold, split in manifest.splits.items():
        assert sorted(split.train + split.val + split.test) == CASES
        assert split.test and all(cases[c].fold == fold for c in split.test)
        assert all(cases[c].fold != fold for c in split.train + split.val)
    assert cases["p01_frame01"].fold == cases["p01_frame09"].fold != cases["p02_frame01"].fold
    meta = cases["p02_frame11"]
    assert meta.shape == (1, 16, 16, 6)
    assert meta.source_shape == (24, 20, 6)
    assert meta.source_spacing == pytest.approx([1.5, 1.5, 5.0])
    assert meta.slice_axis == 2
    assert meta.file == "cases/p02_frame11.npz" and (out / meta.file).is_file()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved == {"preprocess": to_dict(config)}


def test_sample_ids_are_stable_and_independent_of_other_cases(msd_folder, tmp_path, rng):
    out = tmp_path / "cache"
    first = preprocess_dataset(msd_folder, out, small(), progress=False)
    ids = {c.case: c.sample_ids for c in first.cases}
    assert ids["p01_frame01"] == tuple(f"p01_frame01:{i:03d}" for i in range(6))
    assert preprocess_dataset(msd_folder, out, small(), progress=False).cases == first.cases

    add_msd_case(msd_folder, "p00_frame01", *make_pair(rng))
    grown = preprocess_dataset(msd_folder, tmp_path / "fresh", small(), progress=False)
    grown_ids = {c.case: c.sample_ids for c in grown.cases}
    assert list(grown_ids) == ["p00_frame01", *CASES]
    assert {c: grown_ids[c] for c in CASES} == ids


def test_second_run_reuses_every_case_file(msd_folder, tmp_path, calls):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, small(), progress=False)
    assert calls == CASES
    before = mtimes(out)
    calls.clear()
    preprocess_dataset(msd_folder, out, small(), progress=False)
    assert calls == []
    assert mtimes(out) == before


@pytest.mark.parametrize(
    "change",
    [
        {"spatial_size": [12, 12]},
        {"intensity": "none"},
        {"spacing": [3.0, 3.0, -1.0]},
        {"resize": "pad-crop"},
        {"mode": "3d", "spatial_size": [16, 16, 8]},
    ],
    ids=["spatial-size", "intensity", "spacing", "resize", "mode"],
)
def test_array_relevant_setting_redoes_every_case(msd_folder, tmp_path, calls, change):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, small(), progress=False)
    calls.clear()
    manifest = preprocess_dataset(msd_folder, out, small(**change), progress=False)
    assert calls == CASES
    assert CaseStore(out).load_case("p01_frame01").image.shape == manifest.cases[0].shape


def test_touched_source_file_redoes_only_its_case(msd_folder, tmp_path, calls):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, small(), progress=False)
    before = mtimes(out)
    calls.clear()
    touch(msd_folder / "labelsTr" / "p02_frame01.nii.gz")
    preprocess_dataset(msd_folder, out, small(), progress=False)
    assert calls == ["p02_frame01"]
    after = mtimes(out)
    assert [name for name in before if before[name] != after[name]] == ["p02_frame01.npz"]


def test_damaged_case_file_is_redone(msd_folder, tmp_path, calls):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, small(), progress=False)
    calls.clear()
    damaged = out / "cases" / "p01_frame09.npz"
    damaged.write_bytes(damaged.read_bytes()[:200])
    preprocess_dataset(msd_folder, out, small(), progress=False)
    assert calls == ["p01_frame09"]
    assert CaseStore(out).load_case("p01_frame09").image.shape == (1, 16, 16, 6)


def test_replaced_source_content_is_picked_up(msd_folder, tmp_path, rng):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, small(intensity="none"), progress=False)
    path = msd_folder / "imagesTr" / "p01_frame01.nii.gz"
    write_nifti(path, np.full((24, 20, 6), 3.0, np.float32), (1.5, 1.5, 5.0))
    touch(path)
    preprocess_dataset(msd_folder, out, small(intensity="none"), progress=False)
    image = CaseStore(out).load_case("p01_frame01").image
    assert image.max() == pytest.approx(3.0, abs=1e-4)


@pytest.mark.parametrize(
    "change",
    [{"folds": 1}, {"seed": 5}, {"val_groups": 1.0}, {"group_regex": r"^(p\d+)_frame(\d+)"}],
    ids=["folds", "seed", "val-groups", "group-regex"],
)
def test_split_only_settings_do_not_preprocess_again(msd_folder, tmp_path, calls, change):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, small(), progress=False)
    before = mtimes(out)
    calls.clear()
    manifest = preprocess_dataset(msd_folder, out, small(**change), progress=False)
    assert calls == []
    assert mtimes(out) == before
    assert len(manifest.splits) == manifest.config["folds"]


def test_new_split_settings_reach_the_manifest(msd_folder, tmp_path):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, small(), progress=False)
    manifest = preprocess_dataset(msd_folder, out, small(group_regex=""), progress=False)
    assert [c.group for c in manifest.cases] == CASES


def _folder_with_empty_slices(root: Path, rng) -> Path:
    training = []
    for case in ("a_frame01", "b_frame01"):
        image, _ = make_pair(rng)
        label = np.zeros((24, 20, 6), np.uint8)
        label[5:12, 5:12, 1:4] = 1
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    meta = {"modality": {"0": "MRI"}, "labels": {"0": "background", "1": "fg"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_dropping_empty_slices(tmp_path, rng):
    root = _folder_with_empty_slices(tmp_path / "data", rng)
    manifest = preprocess_dataset(root, tmp_path / "cache", small(keep_empty_slices=False), progress=False)
    meta = manifest.cases[0]
    assert meta.slice_indices == (1, 2, 3)
    assert meta.sample_ids == ("a_frame01:001", "a_frame01:002", "a_frame01:003")
    assert manifest.num_samples == 6
    samples = CaseStore(tmp_path / "cache").samples("all")
    assert len(samples) == 6
    assert all(bool((label > 0).any()) for label in samples.labels)


def test_switching_keep_empty_slices_on_an_existing_cache(tmp_path, rng):
    root = _folder_with_empty_slices(tmp_path / "data", rng)
    out = tmp_path / "cache"
    assert preprocess_dataset(root, out, small(), progress=False).num_samples == 12
    dropped = preprocess_dataset(root, out, small(keep_empty_slices=False), progress=False)
    assert dropped.num_samples == 6
    assert dropped.cases[1].sample_ids == ("b_frame01:001", "b_frame01:002", "b_frame01:003")
    assert preprocess_dataset(root, out, small(), progress=False).num_samples == 12


def _xray_folder(root: Path, rng, cases=("CHNCXR_0001", "CHNCXR_0002", "MCUCXR_0003", "MCUCXR_0004")) -> Path:
    training = []
    for case in cases:
        pixels = rng.integers(0, 256, (40, 30)).astype(np.uint8)
        mask = np.zeros((40, 30), np.uint8)
        mask[8:30, 4:12] = mask[8:30, 18:26] = 1
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", pixels, (0.5, 0.5))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", mask, (0.5, 0.5))
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    meta = {"tensorImageSize": "2D", "modality": {"0": "X-ray"}, "labels": {"0": "background", "1": "lung"}}
    (root / "dataset.json").write_text(json.dumps({**meta, "training": training}))
    return root


def test_2d_images_give_one_sample_per_case(tmp_path, rng):
    root = _xray_folder(tmp_path / "xray", rng)
    manifest = preprocess_dataset(root, tmp_path / "cache", small(), progress=False)
    assert manifest.spatial_dims == 2 and manifest.modality == "xray" and manifest.num_classes == 2
    for meta in manifest.cases:
        assert meta.sample_ids == (meta.case,)
        assert meta.slice_axis is None and meta.source_dims == 2
        assert meta.shape == (1, 16, 16)
        assert meta.intensity_scale == pytest.approx(1 / 255)
    samples = CaseStore(tmp_path / "cache").samples("all")
    assert tuple(samples.images.shape) == (4, 1, 16, 16)
    assert tuple(samples.labels.shape) == (4, 1, 16, 16)
    assert float(samples.images.min()) >= 0.0 and float(samples.images.max()) <= 1.0


def test_3d_mode_keeps_volumes(msd_folder, tmp_path):
    manifest = preprocess_dataset(
        msd_folder, tmp_path / "cache", small(mode="3d", spatial_size=[16, 16, 8]), progress=False
    )
    assert manifest.spatial_dims == 3
    assert manifest.num_samples == 4
    assert all(c.sample_ids == (c.case,) and c.slice_axis is None for c in manifest.cases)
    samples = CaseStore(tmp_path / "cache").samples("all")
    assert tuple(samples.images.shape) == (4, 1, 16, 16, 8)
    assert tuple(samples.labels.shape) == (4, 1, 16, 16, 8)


def test_two_channel_nnunet_data(tmp_path, rng):
    root = tmp_path / "Dataset050_Two"
    for case in ("c_001", "c_002"):
        image, label = make_pair(rng)
        write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", image)
        write_nifti(root / "imagesTr" / f"{case}_0001.nii.gz", image * 2)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    meta = {
        "channel_names": {"0": "T2", "1": "ADC"},
        "labels": {"background": 0, "a": 1, "b": 2},
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    manifest = preprocess_dataset(root, tmp_path / "cache", small(), progress=False)
    assert manifest.in_channels == 2
    assert manifest.cases[0].image_files[1].endswith("c_001_0001.nii.gz")
    assert manifest.modality == "other"  # "T2" is not a modality name: intensities are kept
    samples = CaseStore(tmp_path / "cache").samples("all")
    assert tuple(samples.images.shape) == (12, 2, 16, 16)


def test_undeclared_labels_count_classes_from_the_data(msd_folder, tmp_path):
    (msd_folder / "dataset.json").unlink()
    manifest = preprocess_dataset(msd_folder, tmp_path / "cache", small(), progress=False)
    assert manifest.num_classes == 3
    assert manifest.labels == {0: "class 0", 1: "class 1", 2: "class 2"}
    assert manifest.modality == "other"


def test_bad_case_raises_naming_the_file(msd_folder, tmp_path):
    label = msd_folder / "labelsTr" / "p01_frame09.nii.gz"
    write_nifti(label, np.zeros((24, 20, 5), np.uint8), (1.5, 1.5, 5.0))
    with pytest.raises(DataError, match="label shape") as info:
        preprocess_dataset(msd_folder, tmp_path / "cache", small(), progress=False)
    assert str(label) in str(info.value)


@pytest.mark.realdata
def test_real_headers_cache_keeps_the_true_spacing(tmp_path):
    root = real_data("acdc_real_headers")
    config = PreprocessConfig(spacing=[1.5, 1.5, -1], folds=2)
    manifest = preprocess_dataset(root, tmp_path / "cache", config, progress=False)
    store = CaseStore(tmp_path / "cache")
    case = store.load_case("patient110_fixed")
    assert case.meta.source_spacing == pytest.approx([1.5625, 1.5625, 10.0])
    np.testing.assert_allclose(np.linalg.norm(case.source_affine[:3, :3], axis=0), [1.5625, 1.5625, 10.0])
    # 224 voxels of 1.5625 mm resample to round(224 * 1.5625 / 1.5) = 233 voxels of 1.5 mm; pad-resize to 128
    # scales both in-plane axes by 128 / 233 (square: no padding), so a cached voxel is 1.5 * 233 / 128 mm.
    # (Read with the unit sform, the same chain would give 1.5 * 149 / 128 = 1.746 mm.)
    resampled = round(224 * 1.5625 / 1.5)
    assert case.image.shape == (1, 128, 128, 18)
    np.testing.assert_allclose(np.linalg.norm(case.affine[:3, :3], axis=0), [1.5 * resampled / 128] * 2 + [10.0])
    assert 1.5 * resampled / 128 == pytest.approx(224 * 1.5625 / 128, rel=2e-3)  # the field of view is kept
    groups = {c.case: c.patient for c in manifest.cases}
    assert sorted(set(groups.values())) == ["patient110", "patient115", "patient122", "patient139"]
    for split in manifest.splits.values():
        sides = {
            side
            for side in split.SIDES
            if "patient110_fixed" in split.side(side) or "patient110_moving" in split.side(side)
        }
        assert len(sides) == 1


@pytest.mark.realdata
def test_real_ct_is_windowed_to_unit_range(tmp_path):
    source = real_data("lung_ct")
    # lung2 only (test_chain covers lung1): the real dataset.json, its training list cut to one case
    meta = json.loads((source / "dataset.json").read_text())
    meta["training"] = [
        {key: str((source / path).resolve()) for key, path in item.items()}
        for item in meta["training"]
        if "lung2" in item["image"]
    ]
    root = tmp_path / "lung_ct_one"  # its dataset.json lists absolute paths into ../shared: allowed explicitly
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps(meta))
    # pad-crop keeps voxels one to one (and is fast on 512 x 512 slices); the intensity settings are the defaults
    config = PreprocessConfig(spatial_size=[64, 64], resize="pad-crop", folds=1)
    manifest = preprocess_dataset(root, tmp_path / "cache", config, progress=False, allow_outside_paths=True)
    assert [c.case for c in manifest.cases] == ["lung2"]
    assert manifest.modality == "ct"
    assert manifest.labels == {0: "background", 1: "lung", 2: "tumour"}
    store = CaseStore(tmp_path / "cache")
    for meta in manifest.cases:
        assert meta.intensity_scale == pytest.approx(1 / 1400)
        assert meta.intensity_offset == pytest.approx(1000 / 1400)
        case = store.load_case(meta.case)
        canonical = nib.as_closest_canonical(nib.load(meta.image_files[0]))  # the files are LPS, the cache RAS
        hu = np.asarray(canonical.dataobj)[224:288, 224:288].astype(np.float32)  # the centre 64 x 64 crop
        image = case.image[0]
        assert image.shape == hu.shape
        np.testing.assert_allclose(image, np.clip((hu + 1000) / 1400, 0, 1), atol=1e-6)
        assert (hu <= -1000).any() and np.all(image[hu <= -1000] == 0.0)
        assert (hu >= 400).any() and np.all(image[hu >= 400] == 1.0)
        lung = case.label == 1
        assert lung.any() and 0.0 < float(np.median(image[lung])) < 0.3  # aerated lung, about -900..-700 HU
