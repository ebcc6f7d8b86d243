"""Cell expansion (configuration x folds x seeds, sources first), merged settings and fingerprints."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from imaseg.config import merge_mappings
from imaseg.study.cells import cell_fingerprints, eval_settings, expand_cells, slug, train_settings
from imaseg.study.declaration import Configuration, Study


def _study(**changes) -> Study:
    configurations = (
        Configuration("ft", "pgd-at", train={"eps": 1.0, "ima": {"margin": "voxel"}}, recipe="short", init="std"),
        Configuration("std", "std", train={"epochs": 5}),
        Configuration("ablation", "ima", init="std", folds=(0,)),
    )
    base = {
        "name": "toy",
        "source": Path("/s/toy.yaml"),
        "data": Path("/d"),
        "work": Path("/w"),
        "results": Path("/r"),
        "folds": (0, 1),
        "seeds": (0,),
        "configurations": configurations,
        "train": {"lr": 0.1, "ima": {"steps": 10}},
        "recipes": {"short": {"epochs": 2, "lr": 0.01}},
        "evaluate": {"eps": [0.5], "steps": 2},
    }
    return Study(**{**base, **changes})


def test_every_cell_comes_after_the_one_it_starts_from():
    cells = expand_cells(_study())
    assert [c.key for c in cells] == [
        "std fold0 seed0", "ft fold0 seed0", "ablation fold0 seed0", "std fold1 seed0", "ft fold1 seed0",
    ]  # fmt: skip
    assert cells[1].init_key == "std fold0 seed0"
    assert cells[1].folder(Path("/w")) == Path("/w/fold0/seed0/ft")
    assert cells[1].init_folder(Path("/w")) == Path("/w/fold0/seed0/std")


def test_only_adds_the_sources_and_folds_seeds_select():
    cells = expand_cells(_study(), only=["ft"], folds=[1], seeds=[0, 2])
    assert [c.key for c in cells] == ["std fold1 seed0", "ft fold1 seed0", "std fold1 seed2", "ft fold1 seed2"]
    assert expand_cells(_study(), only=["ablation"], folds=[1]) == []  # the ablation runs on fold 0 only


def test_only_refuses_unknown_names():
    with pytest.raises(ValueError, match=r"unknown configurations \['nope'\]; toy.yaml declares"):
        expand_cells(_study(), only=["nope"])


def test_settings_merge_study_recipe_and_configuration():
    study = _study()
    cell = expand_cells(study)[1]
    assert train_settings(study, cell) == {
        "lr": 0.01, "ima": {"steps": 10, "margin": "voxel"}, "epochs": 2, "eps": 1.0,
        "method": "pgd-at", "fold": 0, "seed": 0,
    }  # fmt: skip
    assert eval_settings(study, cell) == {"eps": [0.5], "steps": 2, "seed": 0}
    assert study.train == {"lr": 0.1, "ima": {"steps": 10}}  # not modified by the merge


def test_merged_and_slug():
    assert merge_mappings({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}, "d": 4}) == {"a": {"b": 1, "c": 3}, "d": 4}
    assert slug("ima voxel eps_max 1.5") == "ima-voxel-eps_max-1p5"


def test_fingerprints_follow_the_settings_and_the_source():
    study = _study()
    before = cell_fingerprints(study, expand_cells(study))
    assert cell_fingerprints(study, expand_cells(study)) == before  # deterministic
    std = replace(study.configurations[1], train={"epochs": 6})
    changed = replace(study, configurations=(study.configurations[0], std, study.configurations[2]))
    after = cell_fingerprints(changed, expand_cells(changed))
    assert {k for k in before if before[k] != after[k]} == set(before)  # STD and every fine-tune of it
    evaluation = replace(study, evaluate={"eps": [0.5], "steps": 3})
    assert all(
        a != b for a, b in zip(before.values(), cell_fingerprints(evaluation, expand_cells(evaluation)).values())
    )
    moved = replace(study, work=Path("/elsewhere"), data=Path("/other"))
    assert cell_fingerprints(moved, expand_cells(moved)) == before  # where things live is not a setting


def test_fingerprints_need_the_source_first():
    study = _study()
    cells = expand_cells(study)
    with pytest.raises(ValueError, match="comes before 'std fold0 seed0', the cell it starts from"):
        cell_fingerprints(study, [cells[1], cells[0]])
