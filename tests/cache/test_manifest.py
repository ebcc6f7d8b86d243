"""Manifest, CaseMeta and PreprocessingRecord: exact round trips of what the writer stores, old files, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imaseg.cache.case_meta import CaseMeta
from imaseg.cache.manifest import MANIFEST_NAME, DataShape, Manifest, read_manifest
from imaseg.cache.reader import CaseStore
from imaseg.cache.run_record import PreprocessingRecord, read_preprocessing_record
from imaseg.cache.split import FoldSplit
from imaseg.cache.writer import preprocess_dataset
from imaseg.data.errors import DataError
from imaseg.transforms.chain import PreprocessConfig
from imaseg.utils.atomic import atomic_write_json

# the order the writer has always stored (a reordering rewrites every manifest.json)
MANIFEST_KEYS = [
    "version", "created", "data_dir", "dataset", "modality", "labels", "num_classes", "class_values", "in_channels",
    "spatial_dims", "config", "cases", "splits", "num_samples",
]  # fmt: skip
CASE_KEYS = [
    "case", "image", "label", "file", "fingerprint", "source_shape", "source_spacing", "shape", "source_dims",
    "slice_axis", "slice_indices", "sample_ids", "max_label", "label_values", "warnings", "intensity_scale",
    "intensity_offset",
]  # fmt: skip


@pytest.fixture
def cache(msd_folder, tmp_path):
    out = tmp_path / "cache"
    preprocess_dataset(msd_folder, out, PreprocessConfig(spatial_size=[16, 12], folds=2), progress=False)
    return out


def stored(cache) -> dict:
    return json.loads((cache / MANIFEST_NAME).read_text(encoding="utf-8"))


def rewrite(cache, change) -> None:
    data = stored(cache)
    change(data)
    (cache / MANIFEST_NAME).write_text(json.dumps(data), encoding="utf-8")


def test_a_written_manifest_round_trips_to_the_same_bytes(cache, tmp_path):
    text = (cache / MANIFEST_NAME).read_text(encoding="utf-8")
    manifest = read_manifest(cache)
    assert manifest.to_json() == json.loads(text)
    assert list(manifest.to_json()) == MANIFEST_KEYS
    assert list(manifest.to_json()["cases"][0]) == [*CASE_KEYS, "group", "fold"]
    atomic_write_json(tmp_path / "again.json", Manifest.from_json(json.loads(text)).to_json())
    assert (tmp_path / "again.json").read_text(encoding="utf-8") == text


def test_each_case_file_meta_round_trips_without_split_fields(cache):
    manifest = read_manifest(cache)
    for meta in manifest.cases:
        with np.load(cache / meta.file, allow_pickle=False) as data:
            raw = json.loads(str(data["meta"]))
        parsed = CaseMeta.from_json(raw)
        assert parsed.to_json() == raw and list(raw) == CASE_KEYS
        assert parsed.group is None and parsed.in_split(meta.patient, meta.fold or 0) == meta


def test_typed_fields_match_the_store(cache):
    manifest, store = read_manifest(cache), CaseStore(cache)
    assert store.manifest == manifest
    assert manifest.data_shape == DataShape(1, 3, 2)
    assert manifest.case("p01_frame09").patient == store.patient("p01_frame09") == "p01"
    assert manifest.case("p01_frame09").slice_axis == 2 and manifest.source_dims == 3
    assert isinstance(manifest.split(1), FoldSplit) and store.case_ids("test", 1) == list(manifest.split(1).test)
    assert manifest.checkpoint_data()["labels"] == {"0": "background", "1": "a", "2": "b"}


def test_a_manifest_without_version_or_class_values_loads_as_version_1(cache):
    def old(data):
        for key in ("version", "class_values"):
            del data[key]
        for case in data["cases"]:
            del case["label_values"], case["warnings"]

    rewrite(cache, old)
    store = CaseStore(cache)
    assert store.manifest.version == 1 and store.class_values == [0, 1, 2]
    assert store.case_meta("p01_frame01").label_values == (0, 1, 2)  # 0..max_label, as the writer assumed
    assert len(store.samples("all")) == 4 * 6


@pytest.mark.parametrize(
    ("version", "match"),
    [
        (2, r"manifest version 2 is newer than the versions this imaseg reads \(1\.\.1\); upgrade imaseg or re-run "),
        ("one", r"manifest version 'one' is not one of the versions .* re-run `imaseg preprocess --data DIR --out"),
        (0, r"manifest version 0 is not one of"),
    ],
)
def test_a_manifest_of_an_unknown_version_is_refused(cache, version, match):
    rewrite(cache, lambda data: data.update(version=version))
    with pytest.raises(DataError, match=match) as info:
        CaseStore(cache)
    assert str(cache / MANIFEST_NAME) in str(info.value)


def test_a_manifest_missing_a_key_is_refused_naming_the_file_and_the_fix(cache):
    rewrite(cache, lambda data: data.pop("splits"))
    with pytest.raises(DataError, match=r"manifest.json: the cache manifest lacks the keys \['splits'\].*re-run "):
        read_manifest(cache)


def test_a_case_missing_a_key_is_refused(cache):
    rewrite(cache, lambda data: data["cases"][1].pop("slice_axis"))
    with pytest.raises(DataError, match=r"case 'p01_frame09' lacks the keys \['slice_axis'\].*`imaseg preprocess"):
        read_manifest(cache)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda data: data.update(labels=["background"]), r"malformed cache manifest .*re-run `imaseg preprocess"),
        (lambda data: data.update(cases=[1]), r"manifest.json: a case record must be a JSON object, got int"),
    ],
    ids=["labels-list", "case-number"],
)
def test_malformed_values_are_refused(cache, change, match):
    rewrite(cache, change)
    with pytest.raises(DataError, match=match):
        read_manifest(cache)


def test_bad_json_is_refused_naming_the_file(cache):
    (cache / MANIFEST_NAME).write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match=r"manifest.json: not valid JSON .*re-run `imaseg preprocess"):
        read_manifest(cache)


def test_case_meta_patient_falls_back_to_the_case():
    assert CaseMeta("p1_a", group="p1").patient == "p1"
    assert CaseMeta("p1_a").patient == "p1_a"


def test_fold_split_refuses_an_unknown_side():
    with pytest.raises(ValueError, match=r"unknown split 'all'; choose one of train, val, test"):
        FoldSplit(("a",)).side("all")


def test_data_shape_lists_what_a_checkpoint_disagrees_on():
    assert DataShape(1, 4, 2).mismatches({"in_channels": 1, "num_classes": 3, "labels": {}}) == {"num_classes": (3, 4)}


def test_preprocessing_record_round_trips_in_the_stored_order(cache):
    record = PreprocessingRecord.from_manifest(read_manifest(cache))
    data = record.to_json()
    assert list(data) == [
        "config", "modality", "labels", "num_classes", "class_values", "in_channels", "spatial_dims", "dataset",
        "source_dims",
    ]  # fmt: skip
    assert PreprocessingRecord.from_json(json.loads(json.dumps(data))) == record
    assert record.source_dims == 3 and record.data_shape == DataShape(1, 3, 2)
    assert record.preprocess_config().spatial_size == [16, 12]


def test_an_old_preprocessing_record_gets_its_defaults():
    old = {"config": {}, "num_classes": 2, "in_channels": 1, "spatial_dims": 2}
    record = PreprocessingRecord.from_json(old)
    assert record.class_values == (0, 1) and record.modality == "other" and record.source_dims == 2
    assert record.dataset is None and record.to_json()["dataset"] == {}
    assert list(record.to_json()) == [
        "config", "modality", "labels", "num_classes", "class_values", "in_channels", "spatial_dims", "dataset",
        "source_dims",
    ]  # fmt: skip


def test_a_preprocessing_record_missing_a_key_says_to_restore_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {}\n", encoding="utf-8")
    (run / "preprocessing.json").write_text(json.dumps({"config": {}, "num_classes": 2}), encoding="utf-8")
    with pytest.raises(DataError, match=r"lacks the keys \['in_channels', 'spatial_dims'\].*restore it from a copy"):
        read_preprocessing_record(run)


def test_a_run_without_a_record_falls_back_to_its_cache_manifest(cache, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"cache: {cache}\ntrain: {{}}\n", encoding="utf-8")
    assert read_preprocessing_record(run) == PreprocessingRecord.from_manifest(read_manifest(cache))


def test_the_record_of_a_model_imaseg_did_not_train_has_only_its_config():
    record = PreprocessingRecord.from_json({"config": {"mode": "2d"}}, source="ext/preprocessing.json")
    assert record.shape is None and record.preprocess_config().mode == "2d"
    with pytest.raises(DataError, match=r"ext/preprocessing.json: states no channels, classes or spatial dims"):
        _ = record.num_classes
    with pytest.raises(DataError, match=r"lacks the keys \['in_channels', 'spatial_dims'\]"):
        PreprocessingRecord.from_json({"config": {}, "num_classes": 2})
