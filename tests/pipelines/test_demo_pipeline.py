"""``pipelines/demo.py --quick`` end to end on tiny settings: the report and results, skipping finished
stages, rerunning changed ones (and what depends on them), and resuming a training killed mid-way."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path

import pytest
from pipeline_tools import PIPELINES, load_pipeline, restored_logging, tiny_demo_config

pytestmark = pytest.mark.slow

STAGES = ["demo-data", "check", "preprocess", "train-std", "train-ima", "evaluate-std", "evaluate-ima"]
ATTACKS = ["pgd-l2", "noise-l2", "worst-l2"]
EPS = [0.0, 0.5]


@pytest.fixture(scope="module")
def demo():
    return load_pipeline("demo")


@pytest.fixture(scope="module")
def chain(demo):
    """The ``chain`` module the demo imported (its ``train`` / ``evaluate`` are what stages call)."""
    module = sys.modules["chain"]
    assert Path(module.__file__).resolve() == PIPELINES / "chain.py"
    return module


def run_demo(demo, out: Path, config: Path) -> int:
    with restored_logging():
        return demo.main(["--out", str(out), "--config", str(config), "--quick", "--device", "cpu"])


def stages(out: Path) -> dict:
    return json.loads((out / "stages.json").read_text())


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def spy(monkeypatch, chain, name: str) -> list[dict]:
    """Record every call of ``chain.NAME`` (the run folder, ``resume``, the result) and pass it through."""
    real, calls = getattr(chain, name), []

    def recorded(*args, **kwargs):
        call = {"run": Path(args[1] if name == "train" else args[0]).name, "resume": kwargs.get("resume")}
        calls.append(call)
        call["result"] = real(*args, **kwargs)
        return call["result"]

    monkeypatch.setattr(chain, name, recorded)
    return calls


@pytest.fixture(scope="module")
def quick_run(demo, tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_pipeline")
    config = tiny_demo_config(root / "tiny.yaml")
    out = root / "out"
    return out, config, run_demo(demo, out, config)


def test_quick_run_writes_report_results_and_stages(quick_run):
    out, _, status = quick_run
    assert status == 0
    html = out / "report.html"
    assert html.is_file() and (out / "report.md").is_file()
    assert "imaseg demo" in html.read_text(encoding="utf-8")

    record = stages(out)
    assert list(record) == STAGES
    assert all(entry["done"] for entry in record.values()), record

    manifest = json.loads((out / "cache" / "manifest.json").read_text())
    test_cases = manifest["splits"]["0"]["test"]
    assert len(test_cases) == 2  # one patient, two phases
    classes = range(1, manifest["num_classes"])
    cells = [("clean", 0.0)] + [(a, e) for a in ATTACKS for e in EPS]
    expected = {(case, c, a, e) for case, c, (a, e) in itertools.product(test_cases, classes, cells)}
    for method, epochs in (("std", 3), ("ima", 1)):
        run = out / "runs" / method
        rows = read_csv(run / "eval" / "default" / "results.csv")
        keys = [(r["case"], int(r["class"]), r["attack"], float(r["eps"])) for r in rows]
        assert len(keys) == len(expected) == 2 * 3 * 7
        assert set(keys) == expected
        dice = [float(r["dice"]) for r in rows if r["dice"]]
        assert dice and all(0.0 <= d <= 1.0 for d in dice)
        summary = json.loads((run / "eval" / "default" / "summary.json").read_text())
        assert summary["epoch"] == epochs and summary["checks"]["forward_deterministic"]["ok"]
        assert [int(r["epoch"]) for r in read_csv(run / "log.csv")] == list(range(1, epochs + 1))
        assert record[f"train-{method}"]["result"] == epochs
    margins = json.loads((out / "runs" / "ima" / "margins.json").read_text())
    assert [e["epoch"] for e in margins["epochs"]] == [1]


def test_rerun_with_the_same_config_skips_every_stage(quick_run, demo, chain, monkeypatch):
    out, config, _ = quick_run
    before = stages(out)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    for name in ("train", "evaluate", "preprocess_dataset", "check_dataset"):
        monkeypatch.setattr(chain, name, must_not_run)
    monkeypatch.setattr(demo, "write_demo_data", must_not_run)
    assert run_demo(demo, out, config) == 0
    assert stages(out) == before  # same fingerprints, start and finish times
    assert (out / "report.html").is_file()


def test_changed_settings_rerun_their_stage_and_everything_downstream(tmp_path, demo, chain, monkeypatch):
    out = tmp_path / "out"
    assert run_demo(demo, out, tiny_demo_config(tmp_path / "a.yaml")) == 0
    first = stages(out)
    trained, evaluated = spy(monkeypatch, chain, "train"), spy(monkeypatch, chain, "evaluate")

    # one more STD epoch: STD retrains, IMA (fine-tuned from it) too, and both are evaluated again
    assert run_demo(demo, out, tiny_demo_config(tmp_path / "b.yaml", **{"methods.std.epochs": 4})) == 0
    assert [c["run"] for c in trained] == ["std", "ima"]
    assert [c["run"] for c in evaluated] == ["std", "ima"]
    assert not any(c["resume"] for c in trained)  # changed settings start over, they do not resume
    second = stages(out)
    for name in ("demo-data", "check", "preprocess"):
        assert second[name] == first[name]
    assert second["train-std"]["result"] == 4
    std = out / "runs" / "std"
    assert len(read_csv(std / "log.csv")) == 4
    assert json.loads((std / "eval" / "default" / "summary.json").read_text())["epoch"] == 4  # not a stale one

    # a second IMA epoch: only IMA's training and evaluation rerun
    trained.clear(), evaluated.clear()
    config = tiny_demo_config(tmp_path / "c.yaml", **{"methods.std.epochs": 4, "methods.ima.epochs": 2})
    assert run_demo(demo, out, config) == 0
    assert [c["run"] for c in trained] == ["ima"] and [c["run"] for c in evaluated] == ["ima"]
    third = stages(out)
    assert third["train-std"] == second["train-std"] and third["evaluate-std"] == second["evaluate-std"]
    assert third["train-ima"]["result"] == 2


def test_training_killed_mid_way_resumes_where_it_stopped(tmp_path, demo, chain, monkeypatch):
    out, config = tmp_path / "out", tiny_demo_config(tmp_path / "tiny.yaml", **{"methods.ima.epochs": 2})
    real_train = chain.train

    def killed_after_one_ima_epoch(cache, run, train_config, *, resume=False, **kwargs):
        if train_config.method != "ima":
            return real_train(cache, run, train_config, resume=resume, **kwargs)
        real_train(cache, run, train_config, resume=resume, stop_after=1, **kwargs)
        raise KeyboardInterrupt  # as if the process was stopped after the first epoch's checkpoint

    monkeypatch.setattr(chain, "train", killed_after_one_ima_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_demo(demo, out, config)
    record = stages(out)
    assert record["train-std"]["done"] and not record["train-ima"]["done"]
    assert "evaluate-std" not in record
    ima = out / "runs" / "ima"
    first_epoch = read_csv(ima / "log.csv")
    assert [int(r["epoch"]) for r in first_epoch] == [1]

    monkeypatch.setattr(chain, "train", real_train)
    trained = spy(monkeypatch, chain, "train")
    assert run_demo(demo, out, config) == 0
    assert [(c["run"], c["resume"]) for c in trained] == [("ima", True)]  # STD is not trained again
    result = trained[0]["result"]
    assert result["epochs_run"] == 1 and result["epoch"] == 2  # epoch 1 came from the checkpoint
    rows = read_csv(ima / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert rows[0] == first_epoch[0]  # the first epoch's row (its timing too) is the original one
    margins = json.loads((ima / "margins.json").read_text())
    assert [e["epoch"] for e in margins["epochs"]] == [1, 2]
    record = stages(out)
    assert list(record) == STAGES and all(entry["done"] for entry in record.values())
    assert json.loads((ima / "eval" / "default" / "summary.json").read_text())["epoch"] == 2
