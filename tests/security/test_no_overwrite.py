"""Nothing written over what is read: outputs inside inputs, two trainers in one folder, labels that would wrap."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import TINY_CHANNELS, make_pair, write_nifti

from imaseg.cache.writer import preprocess_dataset
from imaseg.cli import main
from imaseg.data.check import check_dataset
from imaseg.data.errors import DataError
from imaseg.prediction.predict import predict
from imaseg.run import RunDir
from imaseg.transforms.chain import PreprocessConfig
from imaseg.utils.lock import FolderInUseError, FolderLock


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.fixture
def scans(tiny_data, tmp_path) -> Path:
    folder = tmp_path / "scans"
    folder.mkdir()
    for image in sorted((tiny_data / "imagesTr").iterdir())[:2]:
        shutil.copy(image, folder / image.name)
    return folder


@pytest.mark.parametrize("where", ["same", "inside", "file-folder"])
def test_predict_never_writes_into_its_input(tiny_run, scans, capsys, where):
    before = _digests(scans)
    source = next(scans.iterdir()) if where == "file-folder" else scans
    out = scans / "seg" if where == "inside" else scans
    argv = ["predict", str(tiny_run), "--input", str(source), "--output", str(out), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"--output {out} is" in err and "choose an --output outside" in err and "Traceback" not in err
    assert _digests(scans) == before, "the input images changed"
    assert not (scans / "seg").exists() and not (scans / "predict.json").exists()


def test_predict_beside_its_input_still_works(tiny_run, scans, tmp_path):
    before = _digests(scans)
    sizes = predict(tiny_run, scans, tmp_path / "seg", progress=False)
    assert len(sizes) == 2 and _digests(scans) == before


def test_preprocess_refuses_a_cache_inside_the_data(tiny_data, tmp_path):
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    with pytest.raises(ValueError, match=r"--out .*cache is inside --data .*choose an --out outside"):
        preprocess_dataset(data, data / "cache", PreprocessConfig(spatial_size=[16, 16]), progress=False)
    assert not (data / "cache").exists()


def test_evaluate_refuses_a_run_folder_inside_the_data(tiny_data, tmp_path, capsys):
    data = Path(shutil.copytree(tiny_data, tmp_path / "data"))
    argv = ["evaluate", "--model", str(tmp_path / "m.ts"), "--data", str(data), "--run", str(data / "ext")]
    assert main(argv) == 1
    assert "--run" in capsys.readouterr().err and not (data / "ext").exists()


def _train_argv(cache: Path, out: Path) -> list[str]:
    channels = ",".join(map(str, TINY_CHANNELS))
    return [
        "train",
        *("--cache", str(cache), "--out", str(out), "--epochs", "1", "--channels", channels, "--res-units", "0"),
        *("--no-tensorboard", "--no-progress", "--val-steps", "0"),
    ]


HOLD = """
import os, sys, time
from imaseg.run import RunDir
lock = RunDir(sys.argv[1]).training_lock()
lock.acquire()
print("held", flush=True)
if sys.argv[2] == "die":
    os._exit(0)  # killed: the lock file stays behind
time.sleep(120)
"""


def _holder(run: Path, mode: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run), mode], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_train_on_a_live_run_folder_is_refused(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    holder = _holder(run, "hold")
    try:
        assert main(_train_argv(tiny_cache, run)) == 1
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert f"{run}: this run folder is in use by another imaseg process (pid {holder.pid} on " in err
    assert not (run / "checkpoints").exists() and not (run / "config.yaml").exists()


def test_a_stale_lock_is_taken_over_with_a_warning(tiny_cache, tmp_path, capsys):
    run = tmp_path / "run"
    _holder(run, "die").wait()
    assert RunDir(run).lock_path.is_file()
    assert main(_train_argv(tiny_cache, run)) == 0
    assert "taking over a stale lock of pid" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.pt").is_file() and not RunDir(run).lock_path.exists()


def test_one_process_cannot_hold_a_folder_twice(tmp_path):
    with (
        FolderLock(tmp_path / "x.lock", "run folder"),
        pytest.raises(FolderInUseError, match=f"pid {__import__('os').getpid()}"),
    ):
        FolderLock(tmp_path / "x.lock", "run folder").acquire()


def test_train_refuses_a_run_folder_that_is_the_cache(tiny_cache, tmp_path, capsys):
    cache = Path(shutil.copytree(tiny_cache, tmp_path / "cache"))
    before = _digests(cache)
    assert main(_train_argv(cache, cache)) == 1
    assert "--out" in capsys.readouterr().err and _digests(cache) == before


@pytest.mark.parametrize("value", [2**31, 2**32 + 1, 2**40])
def test_labels_beyond_int32_are_refused_not_wrapped(tmp_path, value):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for case in ("a", "b"):
        image, label = make_pair(rng, shape=(16, 16, 3))
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", image)
        (root / "labelsTr").mkdir(parents=True, exist_ok=True)
        big = label.astype(np.int64)
        big[big == 1] = value if case == "a" else 1
        nib.save(nib.Nifti1Image(big, np.eye(4), dtype=np.int64), str(root / "labelsTr" / f"{case}.nii.gz"))
    report = check_dataset(root)
    assert not report.ok
    assert any(f"label values up to {value} exceed 2147483647" in p for p in report.all_problems())
    with pytest.raises(DataError, match=f"a.nii.gz: label values up to {value} exceed 2147483647"):
        preprocess_dataset(root, tmp_path / "cache", PreprocessConfig(spatial_size=[16, 16]), progress=False)
