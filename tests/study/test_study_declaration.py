"""Reading a study declaration: paths, merged settings, and the errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import REPO

from imaseg.study.declaration import load_study

BASE = {
    "name": "toy",
    "data": "data",
    "work": "work",
    "results": "results",
    "folds": [0, 1],
    "configurations": {"std": {"method": "std"}, "pgd": {"method": "pgd-at", "init": "std", "train": {"eps": 1}}},
}


def _write(tmp_path: Path, **changes) -> Path:
    declaration = {**BASE, **changes}
    path = tmp_path / "studies" / "toy.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(declaration, sort_keys=False))
    return path


def test_paths_are_relative_to_the_declaration(tmp_path):
    study = load_study(_write(tmp_path, data="../shared/acdc"))
    assert study.data == (tmp_path / "shared" / "acdc").resolve()
    assert study.work == (tmp_path / "studies" / "work").resolve()
    assert study.records_path == (tmp_path / "studies" / "results" / "toy_records.json").resolve()
    assert study.output_prefix.name == "toy"


def test_defaults_and_configurations(tmp_path):
    study = load_study(_write(tmp_path))
    assert study.seeds == (0,)
    assert study.robust_attack == "worst-l2"
    assert study.max_minutes is None
    assert study.names() == ["std", "pgd"]
    assert study.configuration("pgd").init == "std"
    assert study.configuration("pgd").train == {"eps": 1}
    assert study.report.compare is None and study.report.budget_key == "1"


def test_the_frontier_study_declares_every_configuration():
    study = load_study(REPO / "benchmarks" / "studies" / "frontier_acdc.yaml")
    assert len(study.configurations) == 15
    assert study.configuration("ima voxel eps_max 2 delta 0.5").folds == (0,)
    assert study.report.compare is not None and study.report.compare.against_setting == "pgd-at eps 1"
    assert study.records_path == REPO / "benchmarks" / "results" / "frontier_acdc_records.json"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param({"colour": 1}, r"unknown keys \['colour'\]", id="unknown-top-key"),
        pytest.param({"folds": []}, "`folds` must be a non-empty list of integers >= 0", id="no-folds"),
        pytest.param({"folds": [0, 0]}, "lists a value twice", id="repeated-fold"),
        pytest.param({"seeds": ["a"]}, "`seeds` must be a non-empty list", id="bad-seed"),
        pytest.param({"max_minutes": -1}, "`max_minutes` must be >= 0, got -1", id="negative-minutes"),
        pytest.param({"name": "a/b"}, "`name` must be a plain file name", id="name-with-folder"),
        pytest.param({"configurations": {}}, "at least one configuration", id="no-configurations"),
        pytest.param(
            {"configurations": {"std": {"train": {}}}},
            r"configurations.std: missing required keys \['method'\]",
            id="no-method",
        ),
        pytest.param(
            {"configurations": {"ft": {"method": "std", "init": "nope"}}},
            "init 'nope' is not a configuration",
            id="unknown-init",
        ),
        pytest.param(
            {"configurations": {"a": {"method": "std", "init": "b"}, "b": {"method": "std", "init": "a"}}},
            "init forms a cycle: a -> b -> a",
            id="init-cycle",
        ),
        pytest.param(
            {"configurations": {"a": {"method": "std", "folds": [0]}, "b": {"method": "std", "init": "a"}}},
            r"init 'a' does not run on folds \[1\]",
            id="init-on-fewer-folds",
        ),
        pytest.param(
            {"configurations": {"a": {"method": "std", "recipe": "long"}}},
            "recipe 'long' is not declared",
            id="unknown-recipe",
        ),
        pytest.param({"data": "~no_such_user_here/acdc"}, r"data: cannot expand '~no_such_user_here/acdc'", id="tilde"),
        pytest.param(
            {"configurations": {"a": {"method": "std", "recipe": ["long"]}}},
            r"`recipe` must be the name of a declared recipe, got \['long'\]",
            id="recipe-not-a-name",
        ),
        pytest.param({"train": {"seed": 3}}, r"\['seed'\] are set by the study per cell", id="seed-in-train"),
        pytest.param(
            {"configurations": {"a": {"method": "std", "train": {"init": "x.pt"}}}},
            "`init` -> the configuration's `init`",
            id="init-path-in-train",
        ),
        pytest.param(
            {"report": {"markers": {"nope": "s"}}},
            r"report: names \['nope'\] are not configurations",
            id="report-unknown-setting",
        ),
        pytest.param(
            {"report": {"compare": {"method": "ima"}}},
            r"missing required keys \['against'\]",
            id="compare-without-reference",
        ),
        pytest.param(
            {"report": {"curves": [{"name": "c", "method": "std", "sweep": True, "settings": ["std"] * 4}]}},
            "a sweep curve has at most 3 settings",
            id="long-sweep",
        ),
    ],
)
def test_declaration_errors_name_the_key(tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        load_study(_write(tmp_path, **changes))


def test_error_names_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"^toy.yaml: study: unknown keys"):
        load_study(_write(tmp_path, colour=1))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_study(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_study(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="a mapping at the top level, got list"):
        load_study(bad)
