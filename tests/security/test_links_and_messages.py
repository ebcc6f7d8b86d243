"""Symbolic links judged the same in every layout, and each message the trust-boundary probes found unclear
(or a traceback) now naming the file and the fix."""

from __future__ import annotations

import builtins
import errno
import gzip
import json
import os
import re
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_CHANNELS, make_pair, write_nifti

from imaseg import checkpoint as checkpoint_module
from imaseg.cache.reader import CaseStore
from imaseg.cache.writer import preprocess_dataset
from imaseg.cli import main, os_error_message
from imaseg.data.check import check_dataset
from imaseg.data.discover import discover
from imaseg.data.errors import DataError
from imaseg.data.nifti import read_nifti
from imaseg.transforms.chain import PreprocessConfig
from imaseg.utils import atomic
from imaseg.utils.atomic import OutputError, atomic_path, blocking_file


def _plain(root: Path, cases=("a", "b"), shape=(16, 16, 3)) -> Path:
    rng = np.random.default_rng(0)
    for case in cases:
        image, label = make_pair(rng, shape=shape)
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", image)
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", label)
    return root


def _nnunet(root: Path) -> Path:
    _plain(root)
    for path in (root / "imagesTr").iterdir():
        path.rename(path.with_name(path.name.replace(".nii.gz", "_0000.nii.gz")))
    meta = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "x": 1, "y": 2}, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.mark.parametrize("layout", ["plain", "nnunet"])
def test_a_file_linked_outside_the_data_folder_is_refused_in_every_layout(tmp_path, layout):
    root = (_plain if layout == "plain" else _nnunet)(tmp_path / "data")
    other = _plain(tmp_path / "other_patient", cases=("secret",))
    name = "c.nii.gz" if layout == "plain" else "c_0000.nii.gz"
    os.symlink(other / "imagesTr" / "secret.nii.gz", root / "imagesTr" / name)
    shutil.copy(root / "labelsTr" / "a.nii.gz", root / "labelsTr" / "c.nii.gz")
    with pytest.raises(
        DataError, match=r"symbolic links lead outside the data folder .*secret\.nii\.gz.*--allow-outside-paths"
    ):
        discover(root)
    assert "c" in {entry["case"] for entry in discover(root, allow_outside_paths=True)}


def test_an_image_folder_linked_outside_is_refused(tmp_path):
    root = tmp_path / "data"
    _plain(tmp_path / "elsewhere")
    root.mkdir()
    os.symlink(tmp_path / "elsewhere" / "imagesTr", root / "imagesTr")
    shutil.copytree(tmp_path / "elsewhere" / "labelsTr", root / "labelsTr")
    report = check_dataset(root)
    assert not report.ok and "imagesTr -> " in report.problems[0]
    assert check_dataset(root, allow_outside_paths=True).ok


def test_links_inside_the_data_folder_stay_accepted(tmp_path):
    root = _plain(tmp_path / "data")
    (root / "store").mkdir()
    shutil.move(root / "imagesTr" / "a.nii.gz", root / "store" / "a.nii.gz")
    os.symlink(root / "store" / "a.nii.gz", root / "imagesTr" / "a.nii.gz")
    assert len(discover(root)) == 2


def test_the_check_command_takes_the_flag(tmp_path, capsys):
    root = _plain(tmp_path / "data")
    os.symlink(_plain(tmp_path / "o", cases=("z",)) / "labelsTr" / "z.nii.gz", root / "labelsTr" / "c.nii.gz")
    shutil.copy(root / "imagesTr" / "a.nii.gz", root / "imagesTr" / "c.nii.gz")
    assert main(["check", str(root)]) == 1
    assert "symbolic links lead outside" in capsys.readouterr().out
    assert main(["check", str(root), "--allow-outside-paths"]) == 0


def _denied(path: Path):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    return refuse


def test_an_unreadable_image_is_called_unreadable_not_corrupt(tmp_path, monkeypatch):
    path = write_nifti(tmp_path / "locked.nii.gz", np.zeros((4, 4, 4), np.float32))
    monkeypatch.setattr("imaseg.data.nifti.nib.load", _denied(path))
    with pytest.raises(
        DataError, match=r"locked\.nii\.gz: cannot read the file: permission denied; .*chmod u\+r"
    ) as info:
        read_nifti(path)
    assert "corrupt" not in str(info.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_image_for_real(tmp_path):
    path = write_nifti(tmp_path / "locked.nii.gz", np.zeros((4, 4, 4), np.float32))
    path.chmod(0)
    with pytest.raises(DataError, match="permission denied"):
        read_nifti(path)


def test_check_on_a_folder_it_cannot_enter_names_it(tmp_path, monkeypatch, capsys):
    root = _plain(tmp_path / "data")
    real_is_file = Path.is_file

    def is_file(self):
        if self.parent == root:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_is_file(self)

    monkeypatch.setattr(Path, "is_file", is_file)
    assert main(["check", str(root)]) == 1
    out = capsys.readouterr()
    assert "permission denied while reading the data set; give your user read access" in out.out
    assert "Traceback" not in out.err


def test_the_error_formatter_never_raises_on_folders_it_cannot_enter(tmp_path, monkeypatch):
    def exists(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "exists", exists)
    assert blocking_file(tmp_path / "a" / "b") is None
    assert "Permission denied" in str(
        OutputError(tmp_path / "a" / "b", PermissionError(errno.EACCES, "Permission denied"))
    )


def test_an_unreadable_folder_is_not_reported_as_unwritable(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    message = os_error_message(PermissionError(errno.EACCES, "Permission denied", str(tmp_path)))
    assert message.startswith(f"cannot read {tmp_path}: Permission denied; give your user access")


def _patched(path: Path, edit) -> Path:
    raw = bytearray(gzip.decompress(path.read_bytes()))
    edit(raw)
    path.write_bytes(gzip.compress(bytes(raw)))
    return path


def _no_sform_zero_pixdim_z(raw: bytearray) -> None:
    struct.pack_into("<h", raw, 252, 1)  # qform_code 1
    struct.pack_into("<h", raw, 254, 0)  # sform_code 0
    struct.pack_into("<f", raw, 88, 0.0)  # pixdim[3] = 0


def test_a_zero_slice_spacing_without_sform_is_a_problem_not_a_silent_millimetre(tmp_path):
    root = _plain(tmp_path / "data")
    _patched(root / "imagesTr" / "a.nii.gz", _no_sform_zero_pixdim_z)
    with pytest.raises(
        DataError, match=r"a\.nii\.gz: pixdim \[1\.0, 1\.0, 0\.0\] holds 0 for axis 2 and the file has no sform"
    ):
        read_nifti(root / "imagesTr" / "a.nii.gz")
    report = check_dataset(root)
    assert not report.ok and "voxel spacing is unknown" in report.cases[0].problems[0]


def test_a_zero_spacing_of_a_single_slice_stays_readable(tmp_path):
    path = write_nifti(tmp_path / "one.nii.gz", np.zeros((8, 8, 1), np.float32))
    _patched(path, _no_sform_zero_pixdim_z)
    assert read_nifti(path).shape == (8, 8, 1)


def test_a_data_set_without_foreground_is_named_before_training(tmp_path, capsys):
    root = tmp_path / "data"
    for case in ("a", "b"):
        write_nifti(root / "imagesTr" / f"{case}.nii.gz", np.ones((16, 16, 3), np.float32))
        write_nifti(root / "labelsTr" / f"{case}.nii.gz", np.zeros((16, 16, 3), np.uint8))
    report = check_dataset(root)
    assert not report.ok and "no label map holds a class other than [0]" in report.problems[0]
    with pytest.raises(DataError, match=r"every label map holds background only \(\[0\]\)"):
        config = PreprocessConfig(spatial_size=[16, 16], folds=2, val_groups=0)
        preprocess_dataset(root, tmp_path / "cache", config, progress=False)
    assert "out_channels" not in report.problems[0]


def test_a_corrupt_cached_image_gets_advice_that_works(tiny_data, tmp_path):
    config = PreprocessConfig(intensity="none", spatial_size=[16, 16])
    cache = tmp_path / "cache"
    preprocess_dataset(tiny_data, cache, config, progress=False)
    store = CaseStore(cache)
    case = store.case_ids()[0]
    path = cache / store.case_meta(case).file
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("image.npy")
    raw[info.header_offset + 200] ^= 0xFF  # inside the image array: the CRC no longer holds
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"cached case is unreadable .*delete this file and rerun `imaseg preprocess`"):
        CaseStore(cache).load_case(case)
    path.unlink()  # the advice
    preprocess_dataset(tiny_data, cache, config, progress=False)
    assert CaseStore(cache).load_case(case).image.shape[0] == 1


def test_a_2d_label_for_a_4d_single_slice_image_is_not_told_to_resample(tmp_path):
    root = tmp_path / "data"
    image, label = make_pair(np.random.default_rng(0), shape=(16, 16))
    write_nifti(root / "imagesTr" / "a.nii.gz", image.reshape(16, 16, 1, 1))
    write_nifti(root / "labelsTr" / "a.nii.gz", label)
    problem = check_dataset(root).cases[0].problems[0]
    assert "the same voxels stored with a different number of axes" in problem and "resample" not in problem


def test_a_4d_input_to_predict_is_told_what_is_wrong(tiny_run, tmp_path, capsys):
    path = write_nifti(tmp_path / "in" / "cine.nii.gz", np.zeros((32, 32, 4, 5), np.float32))
    argv = ["predict", str(tiny_run), "--input", str(path), "--output", str(tmp_path / "seg"), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "cine.nii.gz: image is 4D (32, 32, 4, 5) where 2D or 3D was expected" in err and "does not fit" not in err


def _train(cache: Path, run: Path, *extra: str) -> int:
    channels = ",".join(map(str, TINY_CHANNELS))
    return main(
        [
            "train",
            *("--cache", str(cache), "--out", str(run), "--channels", channels, "--res-units", "0"),
            *("--no-tensorboard", "--no-progress", "--val-steps", "0", *extra),
        ]
    )


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full to fill a disk")
def test_disk_full_while_a_checkpoint_is_written_is_named_and_resume_works(tiny_cache, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert _train(tiny_cache, run, "--epochs", "1") == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    monkeypatch.setattr(checkpoint_module, "open", lambda path, mode: builtins.open("/dev/full", mode), raising=False)
    assert _train(tiny_cache, run, "--epochs", "2", "--resume") == 1
    err = capsys.readouterr().err
    assert re.search(r"checkpoints/(best|last)\.pt: the disk is full \(ENOSPC: No space left on device\); free", err)
    assert "Traceback" not in err and (run / "checkpoints" / "last.pt").read_bytes() == before
    monkeypatch.undo()
    assert _train(tiny_cache, run, "--epochs", "2", "--resume") == 0
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 2


def test_a_writer_that_hides_the_disk_full_error_is_still_named(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 0))  # type: ignore[attr-defined]
    with pytest.raises(OutputError, match=r"x\.pt: the disk is full \(ENOSPC"):
        with atomic_path(tmp_path / "x.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert list(tmp_path.iterdir()) == []
