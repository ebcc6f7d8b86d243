"""``imaseg predict --postprocess lcc``: the written masks have, per class, one connected component; the raw
prediction is the network's (the islands are there without it); a missing scikit-image is named."""

from __future__ import annotations

import json
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from imaseg.cli import main
from imaseg.prediction import PredictConfig, predict

pytest.importorskip("skimage", reason="lcc needs scikit-image (in the test extra)")
predict_module = sys.modules["imaseg.prediction.predict"]  # the package's `predict` is the function


@pytest.fixture
def with_islands(monkeypatch):
    """The network's class map with a lone voxel of every class in a corner: islands by construction."""
    segment = predict_module.segment

    def islands(network, image, layout, device="cpu"):
        classes = segment(network, image, layout, device).copy()
        classes[0, 0, :] = 0
        classes[0, 0, 0], classes[0, 0, 2] = 1, 2  # 3D: slices 0 and 2 of the corner column do not touch
        return classes

    monkeypatch.setattr(predict_module, "segment", islands)


def _components(labels: np.ndarray, cls: int) -> int:
    return int(ndimage.label(labels == cls, structure=np.ones((3,) * labels.ndim))[1])


def test_predict_with_lcc_writes_masks_without_islands(tiny_run, tiny_data, tmp_path, with_islands):
    image = sorted((tiny_data / "imagesTr").iterdir())[0]
    case = image.name.removesuffix(".nii.gz")
    predict(tiny_run, image, tmp_path / "raw", progress=False)
    args = ["predict", str(tiny_run), "--input", str(image), "--output", str(tmp_path / "lcc"), "--no-progress"]
    assert main([*args, "--postprocess", "lcc"]) == 0
    raw = np.asarray(nib.load(tmp_path / "raw" / f"{case}.nii.gz").dataobj)
    kept = np.asarray(nib.load(tmp_path / "lcc" / f"{case}.nii.gz").dataobj)
    classes = [c for c in np.unique(kept) if c > 0]
    assert classes and all(_components(kept, c) == 1 for c in classes)
    assert any(_components(raw, c) > 1 for c in np.unique(raw) if c > 0), "the islands are in the raw masks"
    assert set(np.unique(kept)) <= set(np.unique(raw)) and ((kept == raw) | (kept == 0)).all(), "only removes"
    assert json.loads((tmp_path / "lcc" / "predict.json").read_text())["settings"]["postprocess"] == "lcc"
    assert "postprocess" not in json.loads((tmp_path / "raw" / "predict.json").read_text())["settings"]
    with pytest.raises(ValueError, match=r"holds predictions of another run or other settings"):
        predict(tiny_run, image, tmp_path / "lcc", progress=False)  # the lcc folder is not the raw one's


def test_predict_names_the_missing_package(tiny_run, tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.measure", None)
    with pytest.raises(ValueError, match=r"needs scikit-image, which is not installed: pip install \"imaseg\[lcc\]\""):
        predict(tiny_run, tiny_data, tmp_path / "out", PredictConfig(postprocess="lcc"), progress=False)
    args = ["predict", str(tiny_run), "--input", str(tiny_data), "--output", str(tmp_path / "out")]
    assert main([*args, "--postprocess", "lcc"]) == 1
    assert "imaseg predict: error: `postprocess` 'lcc' needs scikit-image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
