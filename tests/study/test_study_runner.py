"""Running a tiny study on synthetic data: cells through the normal train / evaluate path, resumed and skipped
by fingerprint, a changed setting rerunning only what it touches, the time budget, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import TINY_CHANNELS

from imaseg.cache.reader import CaseStore
from imaseg.cli import main
from imaseg.run import RunDir
from imaseg.study.declaration import load_study
from imaseg.study.records import StudyRecords
from imaseg.study.runner import run_study


def _declaration(tmp_path: Path, data: Path, **ft_changes) -> Path:
    study = {
        "name": "tiny",
        "data": str(data),
        "work": "work",
        "results": "results",
        "folds": [0],
        "seeds": [0],
        "preprocess": {"intensity": "none", "spatial_size": [32, 32], "folds": 5, "val_groups": 0,
                       "group_regex": r"^(patient\d+)"},
        "train": {"channels": TINY_CHANNELS, "res_units": 0, "batch_size": 8, "epochs": 1, "val_steps": 0,
                  "tensorboard": False, "attack_steps": 2, "clip_range": [0.0, 1.0], "deterministic": True},
        "evaluate": {"attacks": ["pgd-l2", "noise-l2", "worst-l2"], "eps": [0.5, 1.0], "steps": 2,
                     "steps_check": False, "overlays": 0, "hd95": False, "device": "cpu"},
        "configurations": {
            "std": {"method": "std"},
            "ft": {"method": "pgd-at", "init": "std", "train": {"eps": 0.5, "lr": 1e-3}, **ft_changes},
        },
        "report": {"budget": 1, "compare": {"method": "pgd-at", "against": "std", "against_setting": "std"}},
    }  # fmt: skip
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _stamp(run: Path) -> int:
    return RunDir(run).last_checkpoint.stat().st_mtime_ns


@pytest.mark.slow
def test_study_runs_resumes_and_reruns_only_what_changed(tmp_path, tiny_data):
    study = load_study(_declaration(tmp_path, tiny_data))
    stopped = run_study(study, max_minutes=0)
    assert (stopped.ran, stopped.stopped_before) == ([], "std fold0 seed0")
    assert not study.records_path.exists()

    first = run_study(study)
    assert first.ran == ["std fold0 seed0", "ft fold0 seed0"] and first.stopped_before is None
    records = StudyRecords.load(study.records_path)
    ft = records.cells["ft fold0 seed0"]
    assert (ft["method"], ft["setting"], ft["fold"], ft["epochs"]) == ("pgd-at", "ft", 0, 1)
    assert set(ft["counts"]) == {"clean", "0.5", "1"} and set(ft["robust"]) == {"0.5", "1"}
    assert set(ft["attacks"]) == {"pgd-l2", "noise-l2", "worst-l2"} and ft["training"]["epochs_run"] == 1
    summary = RunDir(ft["run"]).evaluation().read_summary()
    assert ft["robust"]["1"] == summary.robust_global("worst-l2", 1.0)
    store = CaseStore(study.work / "cache")
    assert records.patients == {c: store.patient(c) for c in ft["counts"]["clean"]}  # from the cache manifest
    assert RunDir(ft["run"]).read_config()["train"]["init"] == str(
        RunDir(records.cells["std fold0 seed0"]["run"]).last_checkpoint
    )

    stamps = {k: _stamp(Path(r["run"])) for k, r in records.cells.items()}
    again = run_study(study)
    assert (again.ran, again.skipped) == ([], ["std fold0 seed0", "ft fold0 seed0"])

    elsewhere = run_study(study, work=tmp_path / "fresh", only=["std"], rerun_missing=True)
    assert elsewhere.ran == ["std fold0 seed0"]  # done in the records, but no model in this work folder
    assert RunDir(tmp_path / "fresh" / "fold0" / "seed0" / "std").last_checkpoint.is_file()

    changed = load_study(_declaration(tmp_path, tiny_data, evaluate={"steps": 1}))
    rerun = run_study(changed)
    assert (rerun.ran, rerun.skipped) == (["ft fold0 seed0"], ["std fold0 seed0"])
    assert {k: _stamp(Path(r["run"])) for k, r in records.cells.items()} == stamps  # evaluated again, not retrained
    assert RunDir(ft["run"]).evaluation().read_summary().settings.steps == 1
    updated = StudyRecords.load(study.records_path)
    assert list(updated.cells) == ["std fold0 seed0", "ft fold0 seed0"]
    assert updated.fingerprints["ft fold0 seed0"] != records.fingerprints["ft fold0 seed0"]

    assert main(["study", "report", str(changed.source)]) == 0
    report = json.loads(changed.output_prefix.with_suffix(".json").read_text())
    assert [r["setting"] for r in report["records"]] == ["std", "ft"]
    assert set(report["paired"]) == {"ft - std @ clean", "ft - std @ 1"}
    tables = changed.output_prefix.with_suffix(".md").read_text()
    assert "| cell | clean, case mean | pgd-l2 eps 1 | noise-l2 eps 1 | worst-l2 eps 1 | epochs | s/epoch |" in tables


@pytest.mark.slow
def test_models_of_done_cells_are_trained_again_where_missing_and_records_kept(tmp_path, tiny_data, caplog):
    study = load_study(_declaration(tmp_path, tiny_data))
    run_study(study, only=["std"])
    done = study.records_path.read_bytes()

    # a fresh checkout: the records say std is done, but ft (not done) starts from std's model, which is gone
    caplog.set_level("INFO", logger="imaseg.study")
    outcome = run_study(study, work=tmp_path / "fresh")
    assert (outcome.rebuilt, outcome.ran) == (["std fold0 seed0"], ["ft fold0 seed0"])
    assert "its clean counts equal the record's on every case" in caplog.text  # deterministic training
    records = StudyRecords.load(study.records_path)
    assert records.cells["std fold0 seed0"] == json.loads(done)["cells"]["std fold0 seed0"]  # kept, not replaced
    assert records.cells["ft fold0 seed0"]["run"].startswith(str(tmp_path / "fresh"))

    tampered = json.loads(study.records_path.read_text())  # a record the rebuilt model cannot reproduce
    first_case = next(iter(tampered["cells"]["std fold0 seed0"]["counts"]["clean"]))
    tampered["cells"]["std fold0 seed0"]["counts"]["clean"][first_case][0][0] += 1
    study.records_path.write_text(json.dumps(tampered))
    caplog.clear()
    elsewhere = run_study(study, work=tmp_path / "other", rebuild_missing=True)
    assert (elsewhere.rebuilt, elsewhere.ran) == (["std fold0 seed0", "ft fold0 seed0"], [])
    assert "std fold0 seed0: model trained again, but its clean counts differ from the record's on 1 of" in caplog.text
    assert json.loads(study.records_path.read_text()) == tampered  # records kept as they were
    assert run_study(study, work=tmp_path / "other", rebuild_missing=True).rebuilt == []  # the models are there

    stages = tmp_path / "other" / "stages.json"  # std's training cut off mid-way: a last.pt, but not finished
    state = json.loads(stages.read_text())
    state["train std fold0 seed0"]["done"] = False
    stages.write_text(json.dumps(state))
    assert run_study(study, work=tmp_path / "other", rebuild_missing=True).rebuilt == ["std fold0 seed0"]


def test_run_refuses_bad_settings_before_any_work(tmp_path, tiny_data):
    study = load_study(_declaration(tmp_path, tiny_data, train={"epochz": 1}))
    with pytest.raises(ValueError, match=r"ft fold0 seed0: train: unknown keys \['epochz'\]"):
        run_study(study)
    assert not study.work.exists()


def test_run_refuses_a_robust_attack_that_is_not_evaluated(tmp_path, tiny_data):
    path = _declaration(tmp_path, tiny_data)
    path.write_text(path.read_text() + "robust_attack: apgd-dice-l2\n")
    with pytest.raises(ValueError, match="`robust_attack` 'apgd-dice-l2' is not among the attacks"):
        run_study(load_study(path))


def test_cli_refuses_unknown_configurations(tmp_path, tiny_data, capsys):
    path = _declaration(tmp_path, tiny_data)
    assert main(["study", "run", str(path), "--only", "nope"]) == 1
    assert "unknown configurations ['nope']" in capsys.readouterr().err


@pytest.mark.slow
def test_an_ima_cells_margins_are_kept_beside_the_records(tmp_path, tiny_data):
    path = _declaration(tmp_path, tiny_data)
    raw = yaml.safe_load(path.read_text())
    raw["configurations"] = {"ima": {"method": "ima", "train": {"ima": {"steps": 2, "eps_max": 0.5}}}}
    raw.pop("report")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    study = load_study(path)
    assert run_study(study).ran == ["ima fold0 seed0"]
    kept = json.loads((study.margins_dir / "ima-fold0-seed0.json").read_text())
    assert kept == RunDir(study.work / "fold0" / "seed0" / "ima").read_margins()
    assert len(kept["epochs"]) == 1 and "margin_changed" in kept["epochs"][0]
