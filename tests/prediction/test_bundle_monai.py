"""An exported bundle run by MONAI alone: ``python -m monai.bundle run`` writes the masks ``imaseg predict``
writes, in each input's own geometry; ``verify_metadata`` and ``verify_net_in_out`` accept it, 2D and 3D."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from helpers import tiny_train_config

from imaseg.prediction import PredictConfig, predict
from imaseg.prediction.bundle import export_bundle

pytest.importorskip("ignite", reason="MONAI's evaluator needs pytorch-ignite (in the test extra)")
SCHEMA = Path(__file__).with_name("bundle_meta_schema.json")


def _inputs(tiny_data: Path, folder: Path) -> Path:
    """One demo case as it is, and the same image cropped, padded and written with an oblique LPS-like affine
    of other spacings, so that mapping back to the source grid is not the identity."""
    folder.mkdir(parents=True)
    source = sorted((tiny_data / "imagesTr").iterdir())[0]
    shutil.copy(source, folder / "plain.nii.gz")
    array = np.asarray(nib.load(str(source)).dataobj).astype(np.float32)
    oblique = np.pad(array, ((4, 6), (0, 0), (0, 1)))[:, 2:30]
    affine = np.array([[-1.4, 0.1, 0, 20], [0.1, -1.6, 0, 5], [0, 0, 5.0, -3], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(oblique, affine), str(folder / "oblique.nii.gz"))
    return folder


def _assert_same_masks(ours: Path, theirs: Path, cases: list[str]) -> None:
    for case in cases:
        expected, written = nib.load(str(ours / f"{case}.nii.gz")), nib.load(str(theirs / f"{case}.nii.gz"))
        np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(expected.dataobj), err_msg=case)
        np.testing.assert_allclose(written.affine, expected.affine, atol=1e-5, err_msg=case)
        assert written.get_data_dtype() == expected.get_data_dtype()


@pytest.fixture(scope="module")
def bundle_2d(tiny_run, tmp_path_factory):
    return export_bundle(tiny_run, tmp_path_factory.mktemp("monai2d") / "bundle")


@pytest.fixture(scope="module")
def run_3d(tiny_data, tmp_path_factory):
    from imaseg.cache.writer import preprocess_dataset
    from imaseg.training import train
    from imaseg.transforms.chain import PreprocessConfig

    root = tmp_path_factory.mktemp("monai3d")
    config = PreprocessConfig(
        intensity="none", mode="3d", spatial_size=[32, 32, 8], folds=5, val_groups=0, group_regex=r"^(patient\d+)"
    )
    preprocess_dataset(tiny_data, root / "cache", config, progress=False)
    train(root / "cache", root / "run", tiny_train_config(epochs=1, channels=[4, 8], batch_size=2), progress=False)
    return root / "run"


def test_monais_cli_writes_the_masks_imaseg_predict_writes(bundle_2d, tiny_run, tiny_data, tmp_path):
    """The model zoo's command, in a subprocess, from the bundle folder: MONAI parses and runs everything."""
    images = _inputs(tiny_data, tmp_path / "in")
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.json"]
    command += ["--dataset_dir", str(images), "--output_dir", str(tmp_path / "monai")]
    done = subprocess.run(command, cwd=bundle_2d, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    predict(tiny_run, images, tmp_path / "imaseg", PredictConfig(), progress=False)
    _assert_same_masks(tmp_path / "imaseg", tmp_path / "monai", ["plain", "oblique"])


def test_a_3d_bundle_runs_under_monai_as_imaseg_predicts(run_3d, tiny_data, tmp_path):
    from monai.bundle import run, verify_net_in_out

    bundle = export_bundle(run_3d, tmp_path / "bundle")
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [32, 32, 8]
    assert metadata["eval_metrics"] == {} and not metadata["imaseg"]["robustness_card"]["evaluated"]
    configs = {"meta_file": str(bundle / "configs" / "metadata.json")}
    verify_net_in_out("network_def", config_file=str(bundle / "configs" / "inference.json"), device="cpu", **configs)
    images = _inputs(tiny_data, tmp_path / "in")
    run(
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        dataset_dir=str(images),
        output_dir=str(tmp_path / "monai"),
        logging_file=False,
        **configs,
    )
    predict(run_3d, images, tmp_path / "imaseg", PredictConfig(), progress=False)
    _assert_same_masks(tmp_path / "imaseg", tmp_path / "monai", ["plain", "oblique"])


def test_monais_verifiers_accept_the_2d_bundle(bundle_2d):
    from monai.bundle import verify_metadata, verify_net_in_out

    meta, config = str(bundle_2d / "configs" / "metadata.json"), str(bundle_2d / "configs" / "inference.json")
    verify_metadata(meta_file=meta, filepath=str(SCHEMA))  # a local schema: the published one is not reachable
    verify_net_in_out("network_def", meta_file=meta, config_file=config, device="cpu")


def test_the_schema_rejects_what_the_issue_found(bundle_2d, tmp_path):
    """The local schema is not a rubber stamp: the old bundle's gaps (no optional_packages_version, an empty
    3D spatial shape) fail it."""
    from monai.bundle import verify_metadata

    metadata = json.loads((bundle_2d / "configs" / "metadata.json").read_text())
    for broken in (
        {k: v for k, v in metadata.items() if k != "optional_packages_version"},
        {**metadata, "network_data_format": {**metadata["network_data_format"], "inputs": {"image": {}}}},
    ):
        (tmp_path / "metadata.json").write_text(json.dumps(broken))
        with pytest.raises(ValueError, match="Failed validating"):
            verify_metadata(meta_file=str(tmp_path / "metadata.json"), filepath=str(SCHEMA))


def test_source_grid_needs_an_image_loaded_by_imaseg():
    import torch

    from imaseg.prediction.bundle_components import SourceGridd

    with pytest.raises(ValueError, match="`image` must be a MetaTensor loaded by imaseg"):
        SourceGridd("pred")({"image": torch.zeros(1, 4, 4), "pred": torch.zeros(1, 4, 4)})
