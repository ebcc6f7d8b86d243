"""``--save-predictions``: NIfTI predictions and perturbations in the source image's geometry and units.

The data here are not on the model grid: the source volumes are 32 x 24 x 3 with an x-flipped affine and
anisotropic spacing; preprocessing reorients them to RAS and pads them to 32 x 32, and scales the
intensities by 0.5 (``range`` 0..2 -> 0..1), so a budget eps is 2 eps in source units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from eval_helpers import numpy_dice, read_rows, small_config
from helpers import tiny_train_config
from nibabel.processing import resample_from_to

from imaseg.cache.reader import CaseStore
from imaseg.evaluation import evaluate, to_source_grid

SOURCE_SHAPE = (32, 24, 3)
SCALE = 0.5
CELLS = ["clean", "pgd-l2__eps0", "pgd-l2__eps0.5"]


@dataclass
class Saved:
    store: CaseStore
    out: Path
    summary: dict
    rows: list[dict]


def _flip_x_on_disk(folder: Path) -> None:
    """Rewrite every NIfTI with its x axis stored reversed, keeping the same world content."""
    for path in sorted(folder.glob("*Tr/*.nii.gz")):
        image = nib.load(path)
        array = np.asarray(image.dataobj)
        reverse = np.eye(4)
        reverse[0, 0], reverse[0, 3] = -1.0, array.shape[0] - 1
        nib.save(nib.Nifti1Image(array[::-1].copy(), image.affine @ reverse), str(path))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Saved:
    """A run trained (40 tiny epochs, clean Dice about 0.4) and evaluated with --save-predictions."""
    from imaseg.cache.writer import preprocess_dataset
    from imaseg.data.demo import write_demo_data
    from imaseg.training.trainer import train
    from imaseg.transforms.chain import PreprocessConfig

    root = tmp_path_factory.mktemp("geometry")
    data = write_demo_data(root / "data", patients=5, shape=SOURCE_SHAPE, spacing=(1.25, 1.5, 8.0), seed=1)
    _flip_x_on_disk(data)
    config = PreprocessConfig(
        intensity="range", window=[0.0, 2.0], spatial_size=[32, 32], folds=5, val_groups=1, group_regex=r"^(patient\d+)"
    )
    preprocess_dataset(data, root / "cache", config, progress=False)
    run = root / "run"
    train(root / "cache", run, tiny_train_config(epochs=40, lr=1e-2, batch_size=4), progress=False)
    summary = evaluate(
        run, small_config(attacks=["pgd-l2"], eps=[0.0, 0.5], overlays=0, save_predictions=True), progress=False
    )
    out = run / "eval" / "default"
    return Saved(CaseStore(root / "cache"), out, summary, read_rows(out / "results.csv"))


def _cases(saved: Saved) -> list[str]:
    return saved.summary["cases"]


def test_the_cache_is_on_another_grid_than_the_source(saved):
    case = saved.store.load_case(_cases(saved)[0])
    assert case.label.shape == (32, 32, 3) and case.meta.source_shape == SOURCE_SHAPE
    assert case.source_affine[0, 0] < 0 < case.affine[0, 0], "the source is x-flipped, the cache RAS"
    assert case.meta.intensity_scale == pytest.approx(SCALE)


@pytest.mark.parametrize("cell", CELLS)
def test_predictions_have_the_source_shape_and_affine(saved, cell):
    files = sorted((saved.out / "predictions" / cell).glob("*_pred.nii.gz"))
    assert [f.name for f in files] == [f"{c}_pred.nii.gz" for c in _cases(saved)]
    for case_id, path in zip(_cases(saved), files):
        source = nib.load(saved.store.case_meta(case_id).image_files[0])
        written = nib.load(path)
        assert written.shape == source.shape == SOURCE_SHAPE
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        assert written.get_data_dtype() == np.uint8


def test_cached_label_maps_back_onto_the_source_label_exactly(saved):
    """Padding and reorientation lose nothing, so the round trip must be exact."""
    for case_id in _cases(saved):
        case = saved.store.load_case(case_id)
        source = np.asarray(nib.load(case.meta.label).dataobj)
        back = to_source_grid(case.label, case.affine, case.source_affine, case.meta.source_shape, order=0)
        np.testing.assert_array_equal(back, source)


@pytest.mark.parametrize("cell", CELLS)
def test_written_prediction_equals_an_independent_resampling_of_the_cell(saved, cell):
    with np.load(saved.out / "cells" / f"{cell}.npz") as data:
        predictions = {c: data[f"pred__{c}"] for c in _cases(saved)}
    for case_id in _cases(saved):
        case = saved.store.load_case(case_id)
        expected = resample_from_to(
            nib.Nifti1Image(predictions[case_id].astype(np.float32), case.affine),
            (SOURCE_SHAPE, case.source_affine),
            order=0,
        )
        written = np.asarray(nib.load(saved.out / "predictions" / cell / f"{case_id}_pred.nii.gz").dataobj)
        np.testing.assert_array_equal(written, np.asarray(expected.dataobj).astype(np.uint8))


def test_clean_prediction_on_the_source_grid_scores_the_reported_dice(saved):
    reported = {(r["case"], int(r["class"])): float(r["dice"]) for r in saved.rows if r["attack"] == "clean"}
    for case_id in _cases(saved):
        label = np.asarray(nib.load(saved.store.case_meta(case_id).label).dataobj)
        written = np.asarray(nib.load(saved.out / "predictions" / "clean" / f"{case_id}_pred.nii.gz").dataobj)
        on_source = numpy_dice(written, label, 4)
        on_cache = [reported[(case_id, c)] for c in (1, 2, 3)]
        assert np.mean(on_cache) > 0.25, "the model must segment something, or the comparison says nothing"
        assert abs(np.mean(on_source) - np.mean(on_cache)) < 0.1, (on_source, on_cache)
        # a mirrored prediction must score clearly worse: the check can tell orientation errors apart
        assert numpy_dice(written[::-1], label, 4)[2] < on_source[2] - 0.1


def test_perturbations_are_in_source_units_on_the_source_grid(saved):
    eps = 0.5
    for case_id in _cases(saved):
        source = nib.load(saved.store.case_meta(case_id).image_files[0])
        written = nib.load(saved.out / "predictions" / f"pgd-l2__eps{eps:g}" / f"{case_id}_perturbation.nii.gz")
        assert written.shape == SOURCE_SHAPE
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
        delta = np.asarray(written.dataobj)
        norms = np.sqrt((delta.astype(np.float64) ** 2).sum(axis=(0, 1)))  # per slice (the attacked sample)
        # the budget is eps in model units = eps / 0.5 in source units; padding dropped only lowers the norm
        assert (norms <= eps / SCALE * (1 + 1e-3)).all(), norms
        assert (norms > 0.5 * eps / SCALE).all(), "most of the budget lands on the image, not the padding"
    zero = nib.load(saved.out / "predictions" / "pgd-l2__eps0" / f"{_cases(saved)[0]}_perturbation.nii.gz")
    assert not np.asarray(zero.dataobj).any()
    assert not list((saved.out / "predictions" / "clean").glob("*_perturbation.nii.gz"))


@pytest.mark.parametrize("eps", [0.0, 0.5])
def test_csv_budget_in_source_units_and_rms(saved, eps):
    rows = [r for r in saved.rows if r["attack"] == "pgd-l2" and float(r["eps"]) == eps]
    assert len(rows) == 2 * 3
    for r in rows:
        assert float(r["eps_source"]) == pytest.approx(eps / SCALE)
        assert float(r["eps_rms"]) == pytest.approx(eps / math.sqrt(32 * 32))
    cell = saved.summary["attacks"]["pgd-l2"]["cells"][[0.0, 0.5].index(eps)]
    assert cell["eps_source"] == pytest.approx(eps / SCALE)
