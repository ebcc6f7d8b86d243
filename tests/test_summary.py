"""``imaseg.summary.Summary``: the typed ``summary.json`` reads back exactly what evaluation wrote, older
layouts still load, and unknown versions or malformed files are refused with the file named."""

from __future__ import annotations

import copy
import json
import math
import shutil

import pytest

from imaseg.data.errors import DataError
from imaseg.run import RunDir
from imaseg.summary import SUMMARY_VERSION, Checks, Summary
from imaseg.utils.atomic import atomic_write_json


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    """``tiny_run`` evaluated with every kind of part: noise, worst case, Linf, HD95, the 2x-steps check."""
    from imaseg.evaluation import EvalConfig, evaluate

    run = tmp_path_factory.mktemp("summary") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    config = EvalConfig(
        attacks=["pgd-l2", "noise-l2", "worst-l2", "pgd-linf"],
        eps=[0.0, 0.5, 1.0],
        eps_linf=[0.0, 2 / 255],
        steps=2,
        hd95=True,
        steps_check=True,
        overlays=0,
    )
    returned = evaluate(run, config, progress=False)
    return returned, RunDir(run).evaluation("default").summary_path


def _raw(path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_written_summary_reads_back_and_writes_the_same_bytes(evaluated, tmp_path):
    returned, path = evaluated
    assert Summary.from_json(returned).to_json() == returned
    again = atomic_write_json(tmp_path / "again.json", Summary.read(path).to_json())
    assert again.read_bytes() == path.read_bytes()
    assert _raw(path)["version"] == SUMMARY_VERSION


def test_the_accessors_read_the_numbers_the_file_holds(evaluated):
    _, path = evaluated
    raw, summary = _raw(path), Summary.read(path)
    assert summary.clean_global == raw["clean"]["mean_dice"]["global"]
    assert summary.main_attack == raw["main_attack"] == "worst-l2"
    assert summary.robust_global("pgd-l2", 0.5) == raw["robust_dice"]["pgd-l2"]["0.5"]
    assert summary.curve("pgd-linf").norm == "linf" and summary.curve("worst-l2").cells[1].members_won
    assert summary.facts.cases == raw["cases"] and summary.settings.steps == 2
    assert summary.class_names == list(raw["classes"].values())
    assert summary.endpoints is not None and summary.endpoints.errors() == raw["endpoints"]["mean_abs_error"]["clean"]
    assert summary.checks.steps_2x is not None and summary.checks.steps_2x.attack == raw["checks"]["steps_2x"]["attack"]
    with pytest.raises(KeyError, match=r"no attack 'fgsm-l2' in this summary; evaluated: pgd-l2, noise-l2"):
        summary.curve("fgsm-l2")
    with pytest.raises(KeyError, match=r"no cell at eps 0.7; the budgets are 0, 0.5, 1"):
        summary.robust_global("pgd-l2", 0.7)


def test_failed_checks_count_every_failing_row_of_list_valued_checks(evaluated):
    _, path = evaluated
    raw = _raw(path)
    assert Summary.from_json(raw).failed_checks() == []
    raw["checks"]["noise_weaker_than_attack"][-1]["ok"] = False
    raw["checks"]["forward_deterministic"]["ok"] = False
    assert Summary.from_json(raw).failed_checks() == ["forward_deterministic", "noise_weaker_than_attack"]


def test_a_summary_written_before_the_version_key_loads_as_version_1(evaluated):
    _, path = evaluated
    raw = _raw(path)
    old = {k: v for k, v in raw.items() if k not in ("version", "endpoints", "citations")}
    old["checks"] = {("eps0_equals_clean" if k == "forward_deterministic" else k): v for k, v in old["checks"].items()}
    summary = Summary.from_json(old)
    assert summary.version == 1 and summary.endpoints is None and summary.facts.citations == []
    assert summary.checks.forward_deterministic is not None
    assert summary.checks.forward_deterministic.ok is raw["checks"]["forward_deterministic"]["ok"]
    assert summary.clean_global == raw["clean"]["mean_dice"]["global"]


def test_unknown_keys_are_kept_and_written_back(evaluated):
    _, path = evaluated
    raw = _raw(path)
    raw["reviewer"] = "kept"
    raw["clean"]["note"] = {"kept": True}
    raw["checks"]["custom"] = [{"ok": True}, {"ok": False}]
    summary = Summary.from_json(copy.deepcopy(raw))
    assert summary.to_json() == raw
    assert summary.failed_checks() == ["custom"]


def test_a_newer_version_is_refused_with_what_to_do(evaluated, tmp_path):
    _, path = evaluated
    raw = _raw(path)
    raw["version"] = SUMMARY_VERSION + 1
    with pytest.raises(ValueError, match=rf"summary has version {SUMMARY_VERSION + 1}; .* upgrade imaseg"):
        Summary.from_json(raw)
    raw["version"] = "one"
    with pytest.raises(ValueError, match=r"`version` must be an integer >= 1, got 'one'"):
        Summary.from_json(raw)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw.pop("clean"), r"summary.json has no 'clean'"),
        (lambda raw: raw.update(attacks=[1]), r"summary.json.attacks must be an object, got an array"),
        (lambda raw: raw["attacks"]["pgd-l2"]["cells"].pop(), r"one cell per eps, got 3 eps and 2"),
        (lambda raw: raw["clean"].update(dice="high"), r"summary.json.clean.dice must be dict, got a string"),
        (lambda raw: raw["checks"].update(steps_2x=[]), r"summary.json.checks.steps_2x must be a JSON object"),
    ],
    ids=["no-clean", "attacks-array", "cells-short", "dice-string", "check-array"],
)
def test_a_malformed_summary_is_refused_naming_the_file_and_the_part(evaluated, tmp_path, change, message):
    _, path = evaluated
    raw = _raw(path)
    change(raw)
    bad = tmp_path / "eval" / "default" / "summary.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=message.replace("summary.json", ".*summary.json")) as error:
        Summary.read(bad)
    assert str(bad) in str(error.value) and "rerun `imaseg evaluate`" in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", r"not valid JSON"), ("[1, 2]", r"must be a JSON object, got an array")],
    ids=["not-json", "array"],
)
def test_a_summary_that_is_not_a_json_object_is_refused(tmp_path, text, message):
    path = tmp_path / "summary.json"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        Summary.read(path)


def test_a_missing_summary_says_to_evaluate_first(tmp_path):
    with pytest.raises(DataError, match=r"summary.json: missing; run `imaseg evaluate` first"):
        Summary.read(tmp_path / "summary.json")


def test_nan_written_as_null_reads_back_as_nan():
    checks = Checks.from_json({"forward_deterministic": {"max_abs_diff": None, "ok": True}})
    assert checks.forward_deterministic is not None and math.isnan(checks.forward_deterministic.max_abs_diff)
    assert checks.failed() == []


def test_summary_keys_are_spelled_only_in_the_summary_module():
    from pathlib import Path

    keys = (
        "mean_dice",
        "ci_global",
        "headline_metric",
        "members_won",
        "hd95_undefined",
        "forward_deterministic",
        "noise_weaker_than_attack",
        "dice_falls_with_eps",
        "steps_2x",
        "dice_2x_steps",
        "attack_descriptions",
        "noise_attacks",
        "mean_abs_error",
    )
    root = Path(__file__).resolve().parents[1]
    spelled = [
        f"{path.relative_to(root)}: {key}"
        for folder in ("imaseg", "pipelines")
        for path in sorted((root / folder).rglob("*.py"))
        if path != root / "imaseg" / "summary.py"
        for key in keys
        if f'"{key}"' in path.read_text(encoding="utf-8")
    ]
    # MONAI's bundle metadata names its own metric "mean_dice" (eval_metrics): another format, not summary.json
    other_formats = {"imaseg/prediction/bundle_metadata.py: mean_dice"}
    assert not set(spelled) - other_formats, spelled
