"""``imaseg evaluate`` through ``imaseg.cli.main``: flags reach the evaluation; bad input exits 1 with a message."""

from __future__ import annotations

import json

import pytest
import yaml
from eval_helpers import read_rows

from imaseg.cli import main

FAST = ["--steps", "2", "--no-hd95", "--no-steps-check", "--overlays", "0", "--no-progress"]


def test_evaluate_writes_summary_with_the_flags_given(copy_run, capsys):
    run = copy_run()
    assert main(["evaluate", "--run", str(run), "--eps", "0,0.5", "--attacks", "pgd-l2,noise-l2", *FAST]) == 0
    out = run / "eval" / "default"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attacks"]["pgd-l2"]["eps"] == [0.0, 0.5]
    assert set(summary["attacks"]) == {"pgd-l2", "noise-l2"}
    assert summary["settings"]["steps"] == 2 and summary["settings"]["hd95"] is False
    assert "steps_2x" not in summary["checks"]
    settings = yaml.safe_load((out / "settings.yaml").read_text())
    assert settings["evaluate"]["eps"] == [0.0, 0.5] and settings["cases"] == summary["cases"]
    assert {r["steps"] for r in read_rows(out / "results.csv") if r["attack"] == "pgd-l2"} == {"2"}
    assert "summary.json" in capsys.readouterr().err


def test_evaluate_takes_settings_from_a_yaml_config_and_a_tag(copy_run, tmp_path):
    run = copy_run()
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"evaluate": {"eps": [0.0, 1.0], "attacks": ["pgd-l2"], "seed": 4}}))
    assert main(["evaluate", "--run", str(run), "--config", str(config), "--tag", "yaml", *FAST]) == 0
    summary = json.loads((run / "eval" / "yaml" / "summary.json").read_text())
    assert summary["attacks"]["pgd-l2"]["eps"] == [0.0, 1.0] and summary["settings"]["seed"] == 4
    assert not (run / "eval" / "default").exists()


@pytest.mark.parametrize(
    "extra,message",
    [
        pytest.param(["--attacks", "worst-l1"], r"unknown attack 'worst-l1'", id="unknown-worst-norm"),
        pytest.param(["--attacks", "worst-l2"], r"worst-l2 needs at least one l2 attack", id="worst-without-members"),
        pytest.param(["--split", "nope"], r"unknown split 'nope'", id="unknown-split"),
        pytest.param(
            ["--checkpoint", "/nonexistent/x.pt"], r"checkpoint /nonexistent/x.pt does not exist", id="no-checkpoint"
        ),
    ],
)
def test_evaluate_bad_input_exits_1_with_a_message(copy_run, capsys, extra, message):
    import re

    run = copy_run()
    assert main(["evaluate", "--run", str(run), "--eps", "0,0.5", *FAST, *extra]) == 1
    err = capsys.readouterr().err
    assert "imaseg evaluate: error:" in err
    assert re.search(message, err), err


def test_evaluate_on_a_run_folder_that_is_not_a_run_exits_1(tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path), *FAST]) == 1
    assert "config.yaml does not exist" in capsys.readouterr().err
