"""Memory bounded by the machine, not the header: a volume is refused before it is decoded when it would not
fit the budget, with the real reason, and decoding a .nii.gz holds the volume once, not twice."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import make_pair, write_nifti

from imaseg.cli import main
from imaseg.data.errors import DataError
from imaseg.data.nifti import read_nifti
from imaseg.utils import memory
from imaseg.utils.memory import memory_budget_limit, set_memory_budget

MiB = 1024**2


def _peak(call) -> int:
    tracemalloc.start()
    try:
        call()
    except DataError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def _claiming(path: Path, shape: tuple[int, ...], padding: int) -> Path:
    """An intact-looking .nii.gz whose header claims ``shape`` float32 voxels, padded to ``padding`` bytes (as a
    well-compressed honest file of that size would be): only the header is ever decompressed."""
    write_nifti(path, np.zeros((2, 2, 2), np.float32))
    raw = bytearray(gzip.decompress(path.read_bytes()))
    struct.pack_into("<8h", raw, 40, len(shape), *shape, *([1] * (7 - len(shape))))
    path.write_bytes(gzip.compress(bytes(raw)) + b"\0" * padding)
    return path


def test_an_honest_volume_above_the_budget_is_refused_before_it_is_decoded(tmp_path):
    path = write_nifti(tmp_path / "big.nii.gz", np.random.default_rng(0).normal(size=(64, 64, 128)).astype(np.float32))
    with memory_budget_limit(1 * MiB):
        with pytest.raises(DataError, match=r"big\.nii\.gz: decoding it needs 2\.0 MiB .*the file is intact") as info:
            read_nifti(path)
        assert "truncated" not in str(info.value) and "--memory-budget" in str(info.value)
        assert _peak(lambda: read_nifti(path)) < MiB // 2, "the voxels were allocated before the refusal"


def test_a_small_file_claiming_gigabytes_is_refused_by_the_machines_budget(tmp_path, monkeypatch):
    path = _claiming(tmp_path / "zeros.nii.gz", (2000, 2000, 300), padding=4_700_000)  # 4.5 GiB of float32
    monkeypatch.setattr(memory, "available_memory", lambda: 4 * 1024**3)
    with pytest.raises(
        DataError, match=r"needs 4\.5 GiB .*more than the memory budget \(half of the 4\.0 GiB available\)"
    ):
        read_nifti(path)
    assert _peak(lambda: read_nifti(path)) < 8 * MiB


def test_decoding_a_compressed_volume_holds_it_once(tmp_path):
    array = np.zeros((128, 128, 256), np.float32)  # 16 MiB: nibabel's own reader peaks at twice that
    path = write_nifti(tmp_path / "z.nii.gz", array)
    peak = _peak(lambda: read_nifti(path))
    assert peak < 1.6 * array.nbytes, f"peak {peak / MiB:.1f} MiB for a {array.nbytes / MiB:.0f} MiB volume"
    assert np.array_equal(read_nifti(path).array, np.asarray(nib.load(str(path)).dataobj))


@pytest.mark.parametrize("scaled", [False, True])
def test_decoding_gives_what_nibabel_gives(tmp_path, scaled):
    array = (np.arange(5 * 6 * 7).reshape(5, 6, 7) - 40).astype(np.int16)
    image = nib.Nifti1Image(array, np.eye(4))
    if scaled:
        image.header.set_slope_inter(0.5, -3.0)
    nib.save(image, str(tmp_path / "s.nii.gz"))
    ours, theirs = read_nifti(tmp_path / "s.nii.gz").array, np.asarray(nib.load(str(tmp_path / "s.nii.gz")).dataobj)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


def test_the_budget_flag_reaches_check_and_preprocess(tmp_path, capsys):
    root = tmp_path / "data"
    image, label = make_pair(np.random.default_rng(0), shape=(64, 64, 64))
    write_nifti(root / "imagesTr" / "a.nii.gz", image)
    write_nifti(root / "labelsTr" / "a.nii.gz", label)
    try:
        assert main(["check", str(root), "--memory-budget", "0.0005"]) == 1
        out = capsys.readouterr().out
        assert "a.nii.gz: decoding it needs 1.0 MiB" in out and "the memory budget set (--memory-budget)" in out
        argv = ["preprocess", "--data", str(root), "--out", str(tmp_path / "cache"), "--memory-budget", "0.0005"]
        assert main(argv) == 1
        assert "decoding it needs" in capsys.readouterr().err
    finally:
        set_memory_budget(None)


@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_a_budget_must_be_positive(value):
    with pytest.raises(ValueError, match="`memory_budget` must be a positive number of GiB"):
        set_memory_budget(value)


def test_an_itk_volume_above_the_budget_is_refused_before_it_is_read(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    path = tmp_path / "scan.nrrd"
    sitk.WriteImage(sitk.Image([64, 64, 64], sitk.sitkFloat32), str(path))
    from imaseg.data.itk import read_itk

    with memory_budget_limit(1 * MiB), pytest.raises(DataError, match=r"scan\.nrrd: reading it needs 2\.0 MiB"):
        read_itk(path)
