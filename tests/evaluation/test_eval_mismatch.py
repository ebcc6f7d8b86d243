"""Clear errors when the checkpoint does not fit the data, or is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from eval_helpers import small_config

from imaseg.cache.manifest import MANIFEST_NAME
from imaseg.cache.writer import preprocess_dataset
from imaseg.data.errors import DataError
from imaseg.evaluation import evaluate, load_run
from imaseg.transforms.chain import PreprocessConfig


def _edited_cache(tiny_cache: Path, target: Path, **changes) -> Path:
    """A copy of ``tiny_cache`` whose manifest claims other ``changes`` (channels, classes, dims)."""
    shutil.copytree(tiny_cache, target)
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    manifest.update(changes)
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    return target


@pytest.fixture
def three_class_cache(msd_folder, tmp_path) -> Path:
    """A real cache of another data set: 3 classes (the tiny run has 4), 1 channel, 2D slices of 32 x 32."""
    out = tmp_path / "cache3"
    preprocess_dataset(msd_folder, out, PreprocessConfig(spatial_size=[32, 32], folds=2, val_groups=0), progress=False)
    return out


def test_other_number_of_classes_is_a_data_error(copy_run, three_class_cache):
    run = copy_run()
    with pytest.raises(DataError, match=r"num_classes: checkpoint 4 vs data 3") as error:
        evaluate(run, small_config(), cache=three_class_cache, progress=False)
    assert "same channels, labels and 2D/3D mode" in str(error.value)
    assert str(three_class_cache) in error.value.paths
    assert not (run / "eval").exists(), "nothing is written for a mismatched run"


@pytest.mark.parametrize(
    "changes,message",
    [
        pytest.param({"in_channels": 2}, r"in_channels: checkpoint 1 vs data 2", id="channels"),
        pytest.param({"num_classes": 6}, r"num_classes: checkpoint 4 vs data 6", id="classes"),
        pytest.param({"spatial_dims": 3}, r"spatial_dims: checkpoint 2 vs data 3", id="dims"),
        pytest.param(
            {"in_channels": 3, "num_classes": 2},
            r"in_channels: checkpoint 1 vs data 3, num_classes: checkpoint 4 vs data 2",
            id="channels-and-classes",
        ),
    ],
)
def test_checkpoint_that_does_not_match_the_data_names_what_differs(copy_run, tiny_cache, tmp_path, changes, message):
    other = _edited_cache(tiny_cache, tmp_path / "other", **changes)
    with pytest.raises(DataError, match=message):
        evaluate(copy_run(), small_config(), cache=other, progress=False)


def test_checkpoint_without_data_record_fails_on_the_weights(copy_run, three_class_cache):
    run = copy_run()
    path = run / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    del state["data"]
    torch.save(state, path)
    with pytest.raises(
        DataError,
        match=r"last\.pt: the weights do not fit this network \(shapes differ \(2\): .*checkpoint \(8, 4, 3, 3\) vs network \(8, 3, 3, 3\)",
    ):
        load_run(run, cache=three_class_cache)


@pytest.mark.parametrize(
    "removed,checkpoint",
    [
        pytest.param(["last.pt"], "last", id="last"),
        pytest.param(["last.pt", "best.pt"], "best", id="best-and-last"),
        pytest.param([], "missing.pt", id="explicit-path"),
    ],
)
def test_missing_checkpoint_is_file_not_found(copy_run, removed, checkpoint):
    run = copy_run()
    for name in removed:
        (run / "checkpoints" / name).unlink()
    if checkpoint.endswith(".pt"):
        checkpoint = str(run / checkpoint)
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*\.pt does not exist"):
        evaluate(run, small_config(checkpoint=checkpoint), progress=False)


def test_best_falls_back_to_last_when_there_is_no_best(copy_run):
    run = copy_run()
    (run / "checkpoints" / "best.pt").unlink()
    loaded = load_run(run, checkpoint="best")
    assert loaded.checkpoint == run / "checkpoints" / "last.pt"


def test_folder_without_run_config_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.yaml does not exist"):
        evaluate(tmp_path, small_config(), progress=False)
