"""The records file: round trip, the patients it keeps, and what it refuses."""

from __future__ import annotations

import json

import pytest

from imaseg.study.records import StudyRecords


def _record(setting: str = "std") -> dict:
    return {"method": "std", "setting": setting, "fold": 0, "seed": 0, "counts": {"clean": {"p1_a": [[1, 0, 0]]}}}


def test_round_trip_keeps_order_patients_and_fingerprints(tmp_path):
    path = tmp_path / "r.json"
    records = StudyRecords()
    records.add("b fold0 seed0", _record("b"), "f1", {"p1_a": "p1"})
    records.add("a fold0 seed0", _record("a"), "f2", {"p1_a": "p1"})
    records.save(path)
    loaded = StudyRecords.load(path)
    assert list(loaded.cells) == ["b fold0 seed0", "a fold0 seed0"]
    assert loaded.patients == {"p1_a": "p1"}
    assert loaded.is_done("a fold0 seed0", "f2") and not loaded.is_done("a fold0 seed0", "f1")
    assert not loaded.is_done("c fold0 seed0", "f2")
    assert json.loads(path.read_text())["version"] == 1


def test_a_rerun_cell_replaces_its_record_in_place():
    records = StudyRecords()
    records.add("a", _record("a"), "f1", {"p1_a": "p1"})
    records.add("b", _record("b"), "f1", {"p1_a": "p1"})
    records.add("a", {**_record("a"), "epochs": 12}, "f3", {"p1_a": "p1"})
    assert [r["setting"] for r in records.records()] == ["a", "b"]
    assert records.cells["a"]["epochs"] == 12 and records.fingerprints["a"] == "f3"


def test_a_case_changing_patient_is_refused():
    records = StudyRecords()
    records.add("a", _record(), "f", {"p1_a": "p1"})
    with pytest.raises(ValueError, match=r"cases \['p1_a'\] belong to other patients"):
        records.add("b", _record(), "f", {"p1_a": "p9"})
    assert "b" not in records.cells


def test_missing_file_is_empty(tmp_path):
    assert StudyRecords.load(tmp_path / "none.json").cells == {}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param("{", "not valid JSON", id="not-json"),
        pytest.param('{"std fold0 seed0": {"counts": {}}}', "not a study records file .no `version`.", id="old"),
        pytest.param('{"version": 7}', "records version 7; this imaseg reads 1", id="version"),
        pytest.param(
            '{"version": 1, "cells": {"a": {"counts": {"clean": {"x": [[1, 0, 0]]}}}}}',
            r"cases \['x'\] \(of 1\) have no patient",
            id="no-patient",
        ),
        pytest.param('{"version": 1, "cells": null}', "`cells` must be a mapping, got NoneType; restore", id="cells"),
        pytest.param('{"version": 1, "cells": {"a": {"counts": 3}}}', "cell 'a' has no `counts` mapping", id="counts"),
    ],
)
def test_load_refuses(tmp_path, content, match):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        StudyRecords.load(path)
