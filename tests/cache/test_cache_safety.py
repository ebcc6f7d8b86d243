"""Nothing lost in the cache: label values above 255 survive the whole chain, a cache half rewritten by an
interrupted preprocess is refused, resampling that erases a label warns and one that blows a case up is
refused, and a finished cache is reused without writing a byte
(so it may live on a read-only disk)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import tiny_train_config, write_nifti

from imaseg.cache import writer
from imaseg.cache.manifest import MANIFEST_NAME
from imaseg.cache.reader import CaseStore
from imaseg.cache.writer import preprocess_dataset
from imaseg.data.errors import DataError
from imaseg.transforms.chain import PreprocessConfig

VALUES = [0, 1, 256, 1000]
SHAPE = (16, 16, 3)


def wide_label_folder(root: Path, cases=("p01_a", "p01_b", "p02_a", "p02_b", "p03_a", "p03_b")) -> Path:
    """An MSD folder whose labels are 0 / 1 / 256 / 1000 (uint16 NIfTI), every value in every case."""
    rng = np.random.default_rng(0)
    training = []
    for case in cases:
        label = np.zeros(SHAPE, np.uint16)
        label[2:6, 2:12] = 1
        label[7:11, 2:12] = 256
        label[12:15, 4:14] = 1000
        image = (label > 0).astype(np.float32) * 0.6 + rng.uniform(0, 0.3, SHAPE).astype(np.float32)
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    labels = {"0": "background", "1": "one", "256": "two-five-six", "1000": "thousand"}
    (root / "dataset.json").write_text(json.dumps({"name": "wide", "labels": labels, "training": training}))
    return root


def config(**overrides) -> PreprocessConfig:
    settings = {"intensity": "none", "spatial_size": [16, 16], "folds": 3, "val_groups": 0, "group_regex": r"^(p\d+)"}
    return PreprocessConfig(**{**settings, **overrides})


def test_label_values_above_255_round_trip_through_preprocess_train_and_evaluate(tmp_path):
    from imaseg.evaluation import EvalConfig, evaluate
    from imaseg.training import train

    data = wide_label_folder(tmp_path / "data")
    manifest = preprocess_dataset(data, tmp_path / "cache", config(), progress=False)
    assert list(manifest.class_values) == VALUES and manifest.num_classes == 4
    assert manifest.labels == {0: "background", 1: "one", 2: "two-five-six", 3: "thousand"}

    with np.load(tmp_path / "cache" / "cases" / "p01_a.npz") as stored:
        assert stored["label"].dtype == np.int32 and sorted(np.unique(stored["label"])) == VALUES  # raw, not wrapped
    store = CaseStore(tmp_path / "cache")
    case = store.load_case("p01_a")
    assert sorted(np.unique(case.label)) == [0, 1, 2, 3]
    source = np.asarray(nib.load(data / "labelsTr" / "p01_a.nii.gz").dataobj)
    assert np.array_equal(store.to_values(case.label), source)

    run = tmp_path / "run"
    train(tmp_path / "cache", run, tiny_train_config(epochs=1), progress=False)
    evaluate(
        run,
        EvalConfig(
            attacks=["pgd-l2"],
            eps=[0.0],
            steps=1,
            hd95=False,
            overlays=0,
            steps_check=False,
            save_predictions=True,
            split="test",
            device="cpu",
        ),
        progress=False,
    )
    written = sorted((run / "eval" / "default" / "predictions" / "clean").glob("*_pred.nii.gz"))
    assert written
    for path in written:
        pred = np.asarray(nib.load(path).dataobj)
        assert pred.shape == SHAPE and set(np.unique(pred).tolist()) <= set(VALUES)


def test_a_cache_mixed_by_an_interrupted_preprocess_is_refused(tmp_path, monkeypatch):
    data = wide_label_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    preprocess_dataset(data, cache, config(), progress=False)
    original = writer._preprocess_case
    done = []

    def killed_after_two(*args, **kwargs):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(original(*args, **kwargs))
        return done[-1]

    monkeypatch.setattr(writer, "_preprocess_case", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset(data, cache, config(spatial_size=[8, 8]), progress=False)
    assert not (cache / MANIFEST_NAME).exists(), "the writer drops the manifest before it rewrites a case"
    with pytest.raises(DataError, match=f"{cache}: no {MANIFEST_NAME}; run `imaseg preprocess"):
        CaseStore(cache)


def test_the_reader_refuses_a_case_file_that_does_not_match_the_manifest(tmp_path):
    data = wide_label_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    preprocess_dataset(data, cache, config(), progress=False)
    other = tmp_path / "other"
    preprocess_dataset(data, other, config(spatial_size=[8, 8]), progress=False)
    (cache / "cases" / "p02_a.npz").write_bytes((other / "cases" / "p02_a.npz").read_bytes())
    store = CaseStore(cache)
    store.load_case("p01_a")
    with pytest.raises(DataError, match=r"p02_a.npz: cached case does not match .*rerun `imaseg preprocess`"):
        store.load_case("p02_a")


def test_resampling_that_erases_a_label_warns_naming_the_file(tmp_path, caplog):
    root = tmp_path / "data"
    label = np.zeros((40, 40, 3), np.uint8)
    label[5:30, 5:30] = 1
    label[35, 35, 1] = 2  # one voxel: gone after 8x downsampling
    for case in ("p01_a", "p02_a", "p03_a"):
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", np.ones(label.shape, np.float32))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    training = [
        {"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ("p01_a", "p02_a", "p03_a")
    ]
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "a", "2": "b"}, "training": training}))
    manifest = preprocess_dataset(
        root, tmp_path / "cache", config(spacing=[8.0, 8.0, -1], mode="3d", spatial_size=[8, 8, 3]), progress=False
    )
    assert "label values [2] vanished in preprocessing" in caplog.text and "p01_a.nii.gz" in caplog.text
    assert manifest.cases[0].warnings


def test_resampling_that_blows_a_case_up_is_refused_before_any_work(tmp_path):
    root = tmp_path / "data"
    label = np.zeros((8, 8, 3), np.uint8)
    label[2:6, 2:6] = 1
    for case in ("p01_a", "p02_a"):
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", np.ones(label.shape, np.float32), (1.0, 1.0, 500.0))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label, (1.0, 1.0, 500.0))
    training = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in ("p01_a", "p02_a")]
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "bg", "1": "a"}, "training": training}))
    with pytest.raises(
        DataError, match=r"p01_a.nii.gz: resampling its spacing 1 x 1 x 500 mm to 1 x 1 x 1 mm .*x500 along axis 2"
    ):
        preprocess_dataset(root, tmp_path / "cache", config(spacing=[1.0, 1.0, 1.0], folds=2), progress=False)


def test_an_unchanged_cache_is_not_written_again(tmp_path):
    data = wide_label_folder(tmp_path / "data")
    cache = tmp_path / "cache"
    first = preprocess_dataset(data, cache, config(), progress=False)
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert preprocess_dataset(data, cache, config(), progress=False) == first
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == before
