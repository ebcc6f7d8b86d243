"""A killed evaluation resumes: finished cells are reused, not recomputed; changed settings invalidate them."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from eval_helpers import read_rows, small_config

from imaseg.evaluation import evaluate

evaluate_module = importlib.import_module(
    "imaseg.evaluation.evaluate"
)  # the package re-exports the function under the module's name
checks_module = importlib.import_module("imaseg.evaluation.checks")  # the steps check attacks again

CASES = 2  # test cases of fold 0
ATTACKED_CELLS = [
    "pgd-l2__eps0",
    "pgd-l2__eps0.5",
    "pgd-l2__eps1",
    "noise-l2__eps0",
    "noise-l2__eps0.5",
    "noise-l2__eps1",
]
ALL_CALLS = (1 + len(ATTACKED_CELLS)) * CASES  # clean + attacked cells; worst cells need no attack


class Killed(Exception):
    pass


class Calls(list):
    """Cell keys of the ``attack_case`` calls made so far; ``kill_after = N`` raises on call N + 1."""

    kill_after: int | None = None


@pytest.fixture
def calls(monkeypatch) -> Calls:
    """Every ``attack_case`` call evaluate makes (by cell key), optionally dying part way (a killed run)."""
    real = evaluate_module.attack_case
    made = Calls()

    def counting(network, case, cell, *args, **kwargs):
        if made.kill_after is not None and len(made) >= made.kill_after:
            raise Killed(f"killed before {cell.key} of {case.case}")
        made.append(cell.key)
        return real(network, case, cell, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "attack_case", counting)
    monkeypatch.setattr(checks_module, "attack_case", counting)
    return made


def _config(**overrides):
    return small_config(**{"overlays": 0, **overrides})


def _done(run) -> set[str]:
    return {p.stem for p in (run / "eval" / "default" / "cells").glob("*.json")}


def _csv(run) -> str:
    return (run / "eval" / "default" / "results.csv").read_text()


def test_uninterrupted_run_attacks_every_case_of_every_cell_once(copy_run, calls):
    evaluate(copy_run(), _config(), progress=False)
    assert sorted(calls) == sorted(["clean"] * CASES + [k for k in ATTACKED_CELLS for _ in range(CASES)])
    assert len(calls) == ALL_CALLS


def test_killed_evaluation_resumes_and_matches_an_uninterrupted_run(copy_run, calls):
    reference = copy_run("reference")
    evaluate(reference, _config(), progress=False)
    run = copy_run("killed")
    calls.clear()
    calls.kill_after = 5  # clean (2 cases), pgd eps 0 (2 cases), then dies inside pgd eps 0.5
    with pytest.raises(Killed):
        evaluate(run, _config(), progress=False)
    assert _done(run) == {"clean", "pgd-l2__eps0"}
    assert not (run / "eval" / "default" / "results.csv").exists()
    calls.clear()
    calls.kill_after = None
    evaluate(run, _config(), progress=False)
    assert "clean" not in calls and "pgd-l2__eps0" not in calls, "finished cells must be reused"
    assert len(calls) == ALL_CALLS - 2 * CASES
    assert _csv(run) == _csv(reference)
    summary = json.loads((run / "eval" / "default" / "summary.json").read_text())
    expected = json.loads((reference / "eval" / "default" / "summary.json").read_text())
    assert summary["robust_dice"] == expected["robust_dice"] and summary["clean"] == expected["clean"]


@pytest.mark.parametrize(
    "deleted",
    [
        pytest.param(["noise-l2__eps0.5.json"], id="one-record"),
        pytest.param(["pgd-l2__eps1.npz"], id="predictions-of-a-record"),
        pytest.param(["clean.json", "noise-l2__eps1.json"], id="two-records"),
    ],
)
def test_deleted_cells_are_recomputed_and_only_they(copy_run, calls, deleted):
    run = copy_run()
    evaluate(run, _config(), progress=False)
    before = _csv(run)
    for name in deleted:
        (run / "eval" / "default" / "cells" / name).unlink()
    calls.clear()
    evaluate(run, _config(), progress=False)
    expected = sorted(name.rsplit(".", 1)[0] for name in deleted for _ in range(CASES))
    assert sorted(calls) == expected
    assert _csv(run) == before


def test_worst_case_cell_is_rebuilt_from_stored_member_predictions(copy_run, calls):
    run = copy_run()
    evaluate(run, _config(), progress=False)
    cells = run / "eval" / "default" / "cells"
    with np.load(cells / "worst-l2__eps1.npz") as data:
        before = {k: data[k] for k in data.files}
    (cells / "worst-l2__eps1.json").unlink()
    calls.clear()
    evaluate(run, _config(), progress=False)
    assert calls == [], "the worst case is rebuilt from the members' cells, without attacking again"
    with np.load(cells / "worst-l2__eps1.npz") as data:
        for key, value in before.items():
            np.testing.assert_array_equal(data[key], value)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"steps": 3}, id="steps"),
        pytest.param({"seed": 1}, id="seed"),
        pytest.param({"losses": ["ce"]}, id="losses"),
        pytest.param({"restarts": 2}, id="restarts"),
    ],
)
def test_changed_attack_settings_invalidate_every_cell(copy_run, calls, change):
    run = copy_run()
    evaluate(run, _config(), progress=False)
    calls.clear()
    evaluate(run, _config(**change), progress=False)
    assert len(calls) == ALL_CALLS, "cells of other attack settings must not be reused"
    key, value = next(iter(change.items()))
    rows = read_rows(run / "eval" / "default" / "results.csv")
    if key in ("steps", "seed", "restarts"):
        assert {r[key] for r in rows if r["attack"] == "pgd-l2"} == {str(value)}
    records = [json.loads(p.read_text()) for p in (run / "eval" / "default" / "cells").glob("*.json")]
    assert len({r["fingerprint"] for r in records}) == 1


def test_a_different_checkpoint_invalidates_every_cell(copy_run, calls):
    run = copy_run()
    evaluate(run, _config(), progress=False)
    calls.clear()
    evaluate(run, _config(checkpoint="best"), progress=False)
    assert len(calls) == ALL_CALLS


@pytest.mark.parametrize(
    "change,attacked",
    [
        pytest.param({"overlays": 1}, [], id="overlays"),
        pytest.param({"steps_check": True}, ["pgd-l2__eps1"] * CASES, id="steps-check-attacks-only-for-the-check"),
    ],
)
def test_settings_that_do_not_change_the_attack_keep_the_cells(copy_run, calls, change, attacked):
    run = copy_run()
    evaluate(run, _config(), progress=False)
    before = _csv(run)
    calls.clear()
    evaluate(run, _config(**change), progress=False)
    assert calls == attacked
    assert _csv(run) == before


def test_rerun_asking_for_hd95_computes_it(copy_run):
    run = copy_run()
    evaluate(run, _config(), progress=False)
    assert {r["hd95"] for r in read_rows(run / "eval" / "default" / "results.csv")} == {""}
    evaluate(run, _config(hd95=True, eps=[0.0, 0.5]), progress=False)
    rows = [r for r in read_rows(run / "eval" / "default" / "results.csv") if r["dice"] and float(r["dice"]) > 0]
    assert rows and all(r["hd95"] != "" for r in rows), "HD95 asked for but left empty"


def test_rerun_asking_for_predictions_writes_the_perturbations(copy_run):
    run = copy_run()
    evaluate(run, _config(attacks=["pgd-l2"], eps=[0.5]), progress=False)
    evaluate(run, _config(attacks=["pgd-l2"], eps=[0.5], save_predictions=True), progress=False)
    folder = run / "eval" / "default" / "predictions" / "pgd-l2__eps0.5"
    assert len(list(folder.glob("*_pred.nii.gz"))) == CASES
    assert len(list(folder.glob("*_perturbation.nii.gz"))) == CASES, "perturbations of reused cells are missing"
