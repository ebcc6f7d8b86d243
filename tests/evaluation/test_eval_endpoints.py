"""Clinical endpoints: structure sizes in physical units, cardiac volumes / EF / mass by hand, and the
evaluation's endpoints.csv against its own predictions."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from eval_helpers import small_config

from imaseg.evaluation import evaluate
from imaseg.evaluation.endpoints import (
    EF_FLOOR,
    MYOCARDIAL_DENSITY,
    cardiac_endpoints,
    ejection_fraction,
    structure_sizes,
)

HEART = {0: "background", 1: "right ventricle", 2: "myocardium", 3: "left ventricle"}


def test_sizes_are_millilitres_in_3d_and_square_centimetres_in_2d():
    volume = np.zeros((4, 4, 4), np.uint8)
    volume[:2, :2, :2] = 2
    assert structure_sizes(volume, np.diag([1.5, 1.5, 10.0, 1.0]), 3) == pytest.approx([0.0, 8 * 22.5 / 1000])
    image = np.zeros((10, 10), np.uint8)
    image[:5] = 1
    assert structure_sizes(image, np.diag([2.0, 2.0, 1.0, 1.0]), 2) == pytest.approx([50 * 4 / 100])


def test_cardiac_endpoints_by_hand():
    sizes = {"p1_frame01": [150.0, 120.0, 140.0], "p1_frame09": [70.0, 110.0, 56.0]}  # RV, MYO, LV in mL
    values = cardiac_endpoints(sizes, {c: "p1" for c in sizes}, HEART)["p1"]
    assert values["lv_edv_ml"] == 140.0 and values["lv_esv_ml"] == 56.0
    assert values["lv_ef_percent"] == pytest.approx(60.0) and values["rv_ef_percent"] == pytest.approx(100 * 80 / 150)
    assert values["myocardial_mass_g"] == pytest.approx(MYOCARDIAL_DENSITY * 120.0)


def test_the_end_diastole_follows_the_truth_when_ids_do_not_say():
    truth = {"p1_a": [1.0, 1.0, 50.0], "p1_b": [1.0, 1.0, 100.0]}  # the larger LV is end-diastole
    predicted = {"p1_a": [1.0, 1.0, 90.0], "p1_b": [1.0, 1.0, 80.0]}  # an attack inverts them
    values = cardiac_endpoints(predicted, {"p1_a": "p1", "p1_b": "p1"}, HEART, reference=truth)["p1"]
    assert values["lv_edv_ml"] == 80.0 and values["lv_esv_ml"] == 90.0 and values["lv_ef_percent"] < 0


@pytest.mark.parametrize(
    ("edv", "esv", "expected"),
    [
        pytest.param(100.0, 40.0, 60.0, id="normal"),
        pytest.param(80.0, 90.0, -12.5, id="phases-swapped-kept-negative"),
        pytest.param(0.5, 60.0, EF_FLOOR, id="erased-edv-clipped"),
        pytest.param(0.0, 60.0, float("nan"), id="no-edv-nan"),
    ],
)
def test_ejection_fraction(edv, esv, expected):
    assert ejection_fraction(edv, esv) == pytest.approx(expected, nan_ok=True)


def test_no_cardiac_endpoints_without_cardiac_labels():
    assert cardiac_endpoints({"a": [1.0]}, {"a": "a"}, {0: "background", 1: "lung"}) == {}


def test_evaluation_writes_endpoint_errors_for_every_cell(copy_run):
    run = copy_run()
    summary = evaluate(run, small_config(attacks=["pgd-l2"], eps=[0.0, 1.0], overlays=0), progress=False)
    with open(run / "eval" / "default" / "endpoints.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    errors = summary["endpoints"]["mean_abs_error"]
    assert set(errors) == {"clean", "pgd-l2__eps0", "pgd-l2__eps1"}
    assert summary["endpoints"]["cardiac"], "the demo data is labelled RV / MYO / LV with two phases a patient"
    assert {"lv_ef_percent", "myocardial_mass_g", "left ventricle ml"} <= set(errors["clean"])
    clean_ef = [float(r["abs_error"]) for r in rows if r["attack"] == "clean" and r["endpoint"] == "lv_ef_percent"]
    assert errors["clean"]["lv_ef_percent"] == pytest.approx(np.mean(clean_ef))
    assert errors["pgd-l2__eps0"] == errors["clean"], "eps 0 predicts as the clean model does"
    assert errors["pgd-l2__eps1"] != errors["clean"], "the attack moves the endpoints"
