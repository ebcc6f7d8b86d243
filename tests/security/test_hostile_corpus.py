"""The hostile-input corpus (``hostile_corpus.py``) in the suite: every case ok, and its summary in
``docs/hostile_inputs.md`` current."""

from __future__ import annotations

import re

import pytest
from hostile_corpus import DOCS, OUTCOMES, Workspace, all_cases, run_case

CASES = all_cases()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return Workspace.create(tmp_path_factory.mktemp("hostile"))


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 120


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case, workspace):
    result = run_case(case, workspace)
    assert result.outcome == "ok", f"{case.name} ({case.what}): {result.outcome}\n{result.output[-3000:]}"


def test_the_documented_summary_lists_every_case_as_ok():
    text = DOCS.read_text(encoding="utf-8")
    total = re.search(r"\*\*(\d+) cases: (.*)\*\*", text)
    assert total is not None, f"{DOCS} has no summary line; run python tests/security/hostile_corpus.py"
    assert int(total.group(1)) == len(CASES)
    assert total.group(2) == ", ".join(f"{len(CASES) if o == 'ok' else 0} {o}" for o in OUTCOMES)
    listed = re.findall(r"^\| `([^`]+)` \|.*\| (\w[\w ]*) \|$", text, re.M)
    assert sorted(listed) == sorted((c.name, "ok") for c in CASES)
