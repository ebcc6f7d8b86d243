"""The run folder type: its layout, its records and their errors."""

from __future__ import annotations

import json

import pytest

from imaseg.data.errors import DataError
from imaseg.run import EvalDir, RunDir, parse_clip_range


def test_layout_is_spelled_in_one_place(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.config_path == tmp_path / "r" / "config.yaml"
    assert run.last_checkpoint == tmp_path / "r" / "checkpoints" / "last.pt"
    evaluation = run.evaluation("default")
    assert isinstance(evaluation, EvalDir) and evaluation.tag == "default"
    assert evaluation.cell_path("clean", ".npz") == tmp_path / "r" / "eval" / "default" / "cells" / "clean.npz"


def test_best_checkpoint_falls_back_to_last_and_a_path_passes_through(tmp_path):
    run = RunDir(tmp_path)
    assert run.checkpoint("best") == run.last_checkpoint
    run.checkpoints_dir.mkdir()
    run.best_checkpoint.write_bytes(b"x")
    assert run.checkpoint("best") == run.best_checkpoint
    assert run.checkpoint("elsewhere/model.pt").as_posix() == "elsewhere/model.pt"


@pytest.mark.parametrize("tag", ["../x", "a/b", "..", ""])
def test_an_evaluation_tag_must_be_a_plain_folder_name(tmp_path, tag):
    with pytest.raises(ValueError, match="`tag` must be a plain folder name"):
        RunDir(tmp_path).evaluation(tag)


def test_records_round_trip_and_absent_ones_are_empty(tmp_path):
    run = RunDir(tmp_path / "r")
    assert not run.is_run() and run.read_split() == {} and run.read_log() == [] and run.read_margins() is None
    run.write_config({"cache": "/c", "train": {"fold": 2}})
    run.write_split({"fold": 2, "train": ["a", "b"]})
    assert run.is_run() and run.train_settings() == {"fold": 2} and run.cache_hint() == "/c"
    assert run.trained_cases() == {"a", "b"}
    assert run.read_preprocessing() is None
    run.write_preprocessing({"num_classes": 3})
    assert run.read_preprocessing() == {"num_classes": 3}


def test_a_corrupt_record_is_a_data_error_naming_the_file(tmp_path):
    run = RunDir(tmp_path)
    run.split_path.write_text("{not json")
    with pytest.raises(DataError, match=r"split\.json: not valid JSON"):
        run.read_split()
    run.preprocessing_path.write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match="expected a JSON object, got list"):
        run.read_preprocessing()


def test_a_train_section_that_is_not_a_mapping_is_refused(tmp_path):
    run = RunDir(tmp_path)
    run.config_path.write_text("train: [1, 2]\n")
    with pytest.raises(ValueError, match="its 'train' section must be a mapping"):
        run.train_settings()


def test_clear_training_removes_what_training_wrote_and_keeps_evaluations(tmp_path):
    run = RunDir(tmp_path)
    run.checkpoints_dir.mkdir()
    run.last_checkpoint.write_bytes(b"w")
    run.log_path.write_text("epoch\n1\n")
    run.margins_path.write_text("{}")
    summary = run.evaluation("default").summary_path
    summary.parent.mkdir(parents=True)
    summary.write_text("{}")
    run.clear_training([RunDir.MARGINS])
    assert not run.checkpoints_dir.exists() and not run.log_path.exists() and not run.margins_path.exists()
    assert run.evaluation_tags() == ["default"]


def test_a_method_file_must_be_a_plain_name(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        RunDir(tmp_path).state_file("../escape.json")


@pytest.mark.parametrize(
    ("value", "message"), [([0, 1, 2], "two numbers"), ([1, 0], "low < high"), ("0,1", "two numbers")]
)
def test_clip_range_is_parsed_in_one_place(value, message):
    assert parse_clip_range([0, 255]) == (0.0, 255.0) and parse_clip_range([]) is None
    with pytest.raises(ValueError, match=message):
        parse_clip_range(value)
