"""``imaseg predict``: label maps in each input's own geometry, volumes, robustness maps, no cache needed."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from imaseg.cli import main
from imaseg.data.errors import DataError
from imaseg.prediction import PredictConfig, predict


@pytest.fixture
def run_without_cache(tiny_run, tmp_path) -> Path:
    """A copy of ``tiny_run`` whose config.yaml names a cache that no longer exists (a moved cache)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["cache"] = str(tmp_path / "moved-away")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def _oblique(path: Path, out: Path) -> Path:
    """``path`` rewritten with a rotated (oblique), anisotropic affine; same voxels."""
    image = nib.load(path)
    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.3, 0.9, 6.0])
    affine[:3, 3] = [-20.0, 12.5, 3.0]
    out.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), str(out))
    return out


def test_label_maps_keep_each_inputs_shape_and_oblique_affine(run_without_cache, tiny_data, tmp_path):
    source = _oblique(sorted((tiny_data / "imagesTr").iterdir())[0], tmp_path / "in" / "scan.nii.gz")
    sizes = predict(run_without_cache, source, tmp_path / "out", progress=False)
    written = nib.load(tmp_path / "out" / "scan.nii.gz")
    original = nib.load(source)
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-5)
    labels = np.asarray(written.dataobj)
    assert labels.max() > 0, "the model segments something on its own training images"
    assert set(sizes) == {"scan"} and sizes["scan"]["unit"] == "mL"


def test_predictions_equal_the_evaluations_clean_predictions(tiny_run, tmp_path):
    """Preprocessing new files must reproduce the cache exactly: same label maps as evaluate writes."""
    from imaseg.cache.reader import CaseStore
    from imaseg.evaluation import EvalConfig, evaluate

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    summary = evaluate(
        run,
        EvalConfig(attacks=["noise-l2"], eps=[0.0], overlays=0, save_predictions=True, hd95=False, steps_check=False),
        progress=False,
    )
    store = CaseStore(yaml.safe_load((run / "config.yaml").read_text())["cache"])
    for case in summary["cases"]:
        image = store.case_meta(case).image
        predict(run, image, tmp_path / "out", progress=False)
        ours = np.asarray(nib.load(tmp_path / "out" / f"{case}.nii.gz").dataobj)
        theirs = np.asarray(
            nib.load(run / "eval" / "default" / "predictions" / "clean" / f"{case}_pred.nii.gz").dataobj
        )
        np.testing.assert_array_equal(ours, theirs)


def test_volumes_are_voxel_counts_times_voxel_volume(run_without_cache, tiny_data, tmp_path):
    predict(run_without_cache, tiny_data, tmp_path / "out", progress=False)  # imagesTr/ of a data set folder
    rows = list(csv.DictReader(open(tmp_path / "out" / "volumes.csv", encoding="utf-8")))
    record = json.loads((run_without_cache / "preprocessing.json").read_text())
    names = {int(k): v for k, v in record["labels"].items()}
    cases = sorted({r["case"] for r in rows})
    assert len(cases) == len(list((tiny_data / "imagesTr").iterdir()))
    for row in rows[:6]:
        labels = nib.load(tmp_path / "out" / f"{row['case']}.nii.gz")
        voxel_ml = abs(np.linalg.det(labels.affine[:3, :3])) / 1000.0
        index = next(i for i, n in names.items() if n == row["structure"])
        expected = (np.asarray(labels.dataobj) == index).sum() * voxel_ml
        assert float(row["size"]) == pytest.approx(expected, rel=1e-4) and row["unit"] == "mL"


def test_robustness_map_holds_flip_norms_up_to_the_budget(run_without_cache, tiny_data, tmp_path):
    image = sorted((tiny_data / "imagesTr").iterdir())[0]
    eps = 3.0
    predict(run_without_cache, image, tmp_path / "out", PredictConfig(robustness_map=eps, steps=5), progress=False)
    case = image.name.replace(".nii.gz", "")
    radius = nib.load(tmp_path / "out" / f"{case}_flip_radius.nii.gz")
    assert radius.shape == nib.load(image).shape
    values = np.asarray(radius.dataobj)
    assert values.min() >= 0 and values.max() <= eps + 1e-6
    assert (values < eps).any(), "a budget of 3 (L2 over a 32 x 32 slice) flips some voxel of a tiny model"
    assert (values == eps).any(), "voxels that never flip hold the budget"


def test_rerun_skips_done_cases_and_other_settings_are_refused(run_without_cache, tiny_data, tmp_path):
    out = tmp_path / "out"
    predict(run_without_cache, tiny_data, out, progress=False)
    first = sorted(out.glob("*.nii.gz"))[0]
    stamp = first.stat().st_mtime_ns
    predict(run_without_cache, tiny_data, out, progress=False)
    assert first.stat().st_mtime_ns == stamp, "a finished case is not written again"
    with pytest.raises(ValueError, match="another run or other settings.*--overwrite"):
        predict(run_without_cache, tiny_data, out, PredictConfig(robustness_map=1.0), progress=False)
    predict(
        run_without_cache, tiny_data, out, PredictConfig(robustness_map=1.0, steps=1, overwrite=True), progress=False
    )
    assert first.stat().st_mtime_ns != stamp and len(list(out.glob("*_flip_radius.nii.gz"))) > 0


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        (
            "not nifti",
            lambda d: (d / "scan.png").write_bytes(b"x") and d / "scan.png",
            "not an image file imaseg reads",
        ),
        ("empty folder", lambda d: d, "no images"),
        ("missing", lambda d: d / "nothing.nii.gz", "no such file or folder"),
    ],
)
def test_bad_input_is_named(run_without_cache, tmp_path, name, make, message):
    folder = tmp_path / "input"
    folder.mkdir()
    with pytest.raises(DataError, match=message):
        predict(run_without_cache, make(folder), tmp_path / "out", progress=False)


def test_two_channel_input_for_a_one_channel_run_is_named(run_without_cache, tiny_data, tmp_path):
    image = sorted((tiny_data / "imagesTr").iterdir())[0]
    (tmp_path / "in").mkdir()
    for channel in ("0000", "0001"):
        shutil.copy(image, tmp_path / "in" / f"scan_{channel}.nii.gz")
    with pytest.raises(DataError, match=r"scan_0000.nii.gz: 2 channel\(s\), but the run was trained on 1"):
        predict(run_without_cache, tmp_path / "in", tmp_path / "out", progress=False)


def test_a_run_without_preprocessing_and_without_its_cache_says_what_to_do(run_without_cache, tiny_data, tmp_path):
    (run_without_cache / "preprocessing.json").unlink()
    with pytest.raises(DataError, match="no preprocessing.json and the training cache .* is gone"):
        predict(run_without_cache, tiny_data, tmp_path / "out", progress=False)


def test_cli_predict_and_evaluate_data_work_after_the_cache_moved(run_without_cache, tiny_data, tmp_path, capsys):
    assert (
        main(
            [
                "predict",
                str(run_without_cache),
                "--input",
                str(tiny_data),
                "--output",
                str(tmp_path / "o"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "o").glob("*.nii.gz"))) == len(list((tiny_data / "imagesTr").iterdir()))
    assert main(["evaluate", "--run", str(run_without_cache)]) == 1
    assert "is gone; evaluate new data with --data" in capsys.readouterr().err
    status = main(
        [
            "evaluate",
            "--run",
            str(run_without_cache),
            "--data",
            str(tiny_data),
            "--attacks",
            "noise-l2",
            "--eps",
            "0",
            "--no-hd95",
            "--no-steps-check",
            "--overlays",
            "0",
            "--allow-training-cases",
            "--no-progress",
        ]
    )
    assert status == 0
    assert (run_without_cache / "eval" / "default" / "summary.json").is_file()


def test_help_says_the_robustness_map_is_an_upper_bound(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "upper bound" in text and "imagesTs" in text


def test_an_image_of_the_wrong_dimensionality_is_named(run_without_cache, tmp_path):
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4, 3), np.float32), np.eye(4)), str(tmp_path / "four_d.nii.gz"))
    with pytest.raises(DataError, match="four_d.nii.gz"):
        predict(run_without_cache, tmp_path / "four_d.nii.gz", tmp_path / "out", progress=False)


@pytest.mark.parametrize("missing", ["config.yaml", "checkpoints/last.pt"])
def test_a_run_missing_its_files_is_named(run_without_cache, tiny_data, tmp_path, capsys, missing):
    (run_without_cache / missing).unlink()
    status = main(["predict", str(run_without_cache), "--input", str(tiny_data), "--output", str(tmp_path / "o")])
    assert status == 1
    assert missing.split("/")[-1] in capsys.readouterr().err
