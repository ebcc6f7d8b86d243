"""``StageRunner``: skip finished stages, rerun changed ones and what depends on them, resume interrupted ones."""

from __future__ import annotations

import json
import os
import sys

import pytest
from pipeline_tools import load_pipeline

from imaseg.pipeline import StageRunner


class Calls:
    """Stage actions that record ``(name, resume)`` and return the name."""

    def __init__(self) -> None:
        self.log: list[tuple[str, bool]] = []

    def __call__(self, name: str):
        def action(resume: bool) -> str:
            self.log.append((name, resume))
            return name

        return action


def run_all(out, calls: Calls, *, data: int = 1, model: int = 1, force: bool = False) -> list[tuple[str, bool]]:
    """A three-stage chain: data -> train -> evaluate (evaluate reads train, train reads data)."""
    calls.log.clear()
    runner = StageRunner(out, force=force)
    runner.run("data", {"n": data}, calls("data"))
    runner.run("train", {"epochs": model}, calls("train"), after=["data"])
    runner.run("evaluate", {"eps": [0, 1]}, calls("evaluate"), after=["train"])
    return list(calls.log)


def test_finished_stages_are_skipped_and_return_their_recorded_result(tmp_path):
    calls = Calls()
    assert run_all(tmp_path, calls) == [("data", False), ("train", False), ("evaluate", False)]
    assert run_all(tmp_path, calls) == []
    state = json.loads((tmp_path / "stages.json").read_text())
    assert all(state[name]["done"] and state[name]["result"] == name for name in ("data", "train", "evaluate"))
    assert StageRunner(tmp_path).run("data", {"n": 1}, calls("data")) == "data"
    assert calls.log == []


def test_a_changed_stage_reruns_with_everything_downstream(tmp_path):
    calls = Calls()
    run_all(tmp_path, calls)
    assert run_all(tmp_path, calls, model=2) == [("train", False), ("evaluate", False)]
    assert run_all(tmp_path, calls, model=2) == []
    assert run_all(tmp_path, calls, data=2, model=2) == [("data", False), ("train", False), ("evaluate", False)]


def test_a_stage_run_again_with_the_same_settings_reruns_what_reads_it(tmp_path):
    """A model retrained with unchanged settings (its record deleted) is a new model: evaluate it again."""
    calls = Calls()
    run_all(tmp_path, calls)
    path = tmp_path / "stages.json"
    state = json.loads(path.read_text())
    del state["train"]
    path.write_text(json.dumps(state))
    assert run_all(tmp_path, calls) == [("train", False), ("evaluate", False)]
    assert run_all(tmp_path, calls) == []


def test_force_reruns_everything(tmp_path):
    calls = Calls()
    run_all(tmp_path, calls)
    assert run_all(tmp_path, calls, force=True) == [("data", False), ("train", False), ("evaluate", False)]


def test_an_interrupted_stage_resumes_and_a_changed_one_starts_over(tmp_path):
    calls = Calls()
    runner = StageRunner(tmp_path)
    runner.run("data", {"n": 1}, calls("data"))

    def killed(resume: bool):
        calls.log.append(("train", resume))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run("train", {"epochs": 1}, killed, after=["data"])
    state = json.loads((tmp_path / "stages.json").read_text())
    assert state["train"]["done"] is False and "started" in state["train"]
    assert run_all(tmp_path, calls) == [("train", True), ("evaluate", False)]

    with pytest.raises(KeyboardInterrupt):
        StageRunner(tmp_path).run("train", {"epochs": 5}, killed, after=["data"])
    assert run_all(tmp_path, calls, model=7) == [("train", False), ("evaluate", False)]  # other settings: no resume


def test_data_signature_follows_the_files(tmp_path):
    load_pipeline("demo")  # puts pipelines/ on sys.path
    signature = sys.modules["chain"]._data_signature
    (tmp_path / "imagesTr").mkdir()
    image = tmp_path / "imagesTr" / "a.nii.gz"
    image.write_bytes(b"x")
    first = signature(tmp_path)
    assert signature(tmp_path) == first and [entry[0] for entry in first] == [os.path.join("imagesTr", "a.nii.gz")]
    os.utime(image, ns=(0, 1))  # rewritten (e.g. regenerated demo data)
    assert signature(tmp_path) != first
    (tmp_path / "dataset.json").write_text("{}")  # a new file
    assert len(signature(tmp_path)) == 2
    assert signature(tmp_path / "missing") == []


@pytest.mark.parametrize(("content", "match"), [("{", "not valid JSON"), ("[]", "not a stage record")])
def test_a_broken_stage_record_is_named_with_the_fix(tmp_path, content, match):
    (tmp_path / "stages.json").write_text(content)
    with pytest.raises(ValueError, match=f"stages.json: {match}.*delete it to run every stage again"):
        StageRunner(tmp_path)


def test_a_stage_entry_that_is_not_an_object_is_named_with_the_fix(tmp_path):
    (tmp_path / "stages.json").write_text('{"data": {"done": true}, "train": "done"}')
    with pytest.raises(ValueError, match="entry of stage 'train' is not a JSON object; delete that entry"):
        StageRunner(tmp_path)
