"""Patient-grouped folds: no patient on two sides, balanced folds, validation from the training groups."""

from __future__ import annotations

from collections import Counter

import pytest

from imaseg.cache.split import assign_folds, check_disjoint, patient_groups, split_for_fold
from imaseg.transforms.chain import PreprocessConfig

GROUP_REGEX = r"^(p\d+)"


def acdc_like_cases(patients: int = 11) -> list[str]:
    cases = []
    for p in range(1, patients + 1):
        cases += [f"p{p:03d}_frame01", f"p{p:03d}_frame{8 + p % 7:02d}"]
        if p % 3 == 0:
            cases.append(f"p{p:03d}_extra")
    return cases


def test_regex_group_one_is_the_patient():
    groups = patient_groups(["p001_frame01", "p001_frame12", "p10_x", "other"], GROUP_REGEX)
    assert groups == {"p001_frame01": "p001", "p001_frame12": "p001", "p10_x": "p10", "other": "other"}


def test_default_regex_strips_phase_suffixes():
    cases = ["patient001_frame01", "patient001_frame12", "patient110_fixed", "patient110_moving", "p139_ED", "lung1"]
    groups = patient_groups(cases, PreprocessConfig().group_regex)
    assert groups == {
        "patient001_frame01": "patient001",
        "patient001_frame12": "patient001",
        "patient110_fixed": "patient110",
        "patient110_moving": "patient110",
        "p139_ED": "p139",
        "lung1": "lung1",
    }


def test_no_regex_means_one_group_per_case():
    assert patient_groups(["a", "b"], None) == {"a": "a", "b": "b"}


def test_bad_regex_raises():
    with pytest.raises(ValueError, match=r"`group_regex` '\(p' is not a valid regular expression"):
        patient_groups(["a"], "(p")


@pytest.mark.parametrize("folds", [2, 3, 5], ids=["2-folds", "3-folds", "5-folds"])
def test_no_patient_on_two_sides_for_any_fold_and_seed(folds):
    cases = acdc_like_cases()
    groups = patient_groups(cases, GROUP_REGEX)
    for seed in range(8):
        group_folds = assign_folds(groups.values(), folds, seed)
        tested = []
        for fold in range(folds):
            split = split_for_fold(groups, group_folds, fold, 0.2, seed)
            assert sorted(split["train"] + split["val"] + split["test"]) == sorted(cases)
            sides = {}
            for side, members in split.items():
                for case in members:
                    assert sides.setdefault(groups[case], side) == side, (seed, fold, case)
            assert split["val"], (seed, fold)
            tested += split["test"]
        assert sorted(tested) == sorted(cases)  # every case is tested exactly once over the folds


@pytest.mark.parametrize(("groups", "folds"), [(11, 3), (10, 5), (7, 2), (4, 4)], ids=["11/3", "10/5", "7/2", "4/4"])
def test_folds_are_balanced(groups, folds):
    for seed in range(5):
        sizes = Counter(assign_folds([f"g{i}" for i in range(groups)], folds, seed).values())
        assert sorted(sizes) == list(range(folds))
        assert max(sizes.values()) - min(sizes.values()) <= 1


def test_assignment_is_seeded():
    names = [f"g{i}" for i in range(12)]
    assert assign_folds(names, 3, 7) == assign_folds(list(reversed(names)), 3, 7)
    assert any(assign_folds(names, 3, 7) != assign_folds(names, 3, seed) for seed in range(8, 12))


def test_validation_groups_come_from_the_non_test_groups():
    cases = acdc_like_cases()
    groups = patient_groups(cases, GROUP_REGEX)
    group_folds = assign_folds(groups.values(), 4, 1)
    for fold in range(4):
        split = split_for_fold(groups, group_folds, fold, 3, 1)
        val_groups = {groups[c] for c in split["val"]}
        assert len(val_groups) == 3
        assert all(group_folds[g] != fold for g in val_groups)
        assert {group_folds[groups[c]] for c in split["test"]} == {fold}


@pytest.mark.parametrize(
    ("val_groups", "expected"), [(0.25, 2), (2, 2), (0.0, 0), (100, 7)], ids=["fraction", "count", "none", "capped"]
)
def test_validation_size(val_groups, expected):
    groups = {f"g{i}": f"g{i}" for i in range(10)}
    group_folds = assign_folds(groups.values(), 5, 0)
    split = split_for_fold(groups, group_folds, 0, val_groups, 0)
    assert len(split["test"]) == 2
    assert len(split["val"]) == expected
    assert split["train"], "at least one training group is always kept"


def test_single_fold_has_no_test_set():
    groups = {f"c{i}": f"g{i // 2}" for i in range(10)}
    split = split_for_fold(groups, assign_folds(groups.values(), 1, 0), 0, 0.2, 0)
    assert split["test"] == []
    assert len(split["val"]) == 2  # one of the 5 groups, both its cases


def test_check_disjoint_names_the_patient():
    groups = {"p001_frame01": "p001", "p001_frame12": "p001", "p002_frame01": "p002"}
    check_disjoint({"train": ["p001_frame01", "p001_frame12"], "test": ["p002_frame01"]}, groups)
    with pytest.raises(ValueError, match="patient 'p001' is on both the train and test sides of the split"):
        check_disjoint({"train": ["p001_frame01", "p002_frame01"], "test": ["p001_frame12"]}, groups)


def test_group_map_csv_overrides_the_regex(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("case,group\n# comment\np001_frame01,alice\np002_frame01, alice\np003_frame01,bob\n")
    groups = patient_groups(["p001_frame01", "p002_frame01", "p003_frame01"], GROUP_REGEX, path)
    assert groups == {"p001_frame01": "alice", "p002_frame01": "alice", "p003_frame01": "bob"}


def test_group_map_missing_a_case_names_it(tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("p001_frame01,alice\n")
    with pytest.raises(ValueError, match=r"groups.csv: no group for cases \['p002_frame01'\]"):
        patient_groups(["p001_frame01", "p002_frame01"], GROUP_REGEX, path)


@pytest.mark.parametrize(
    ("groups", "folds", "match"),
    [(3, 5, "only 3 patient groups for 5 folds"), (3, 0, "`folds` must be >= 1")],
    ids=["too-few-groups", "zero-folds"],
)
def test_bad_fold_counts_raise(groups, folds, match):
    with pytest.raises(ValueError, match=match):
        assign_folds([f"g{i}" for i in range(groups)], folds, 0)


def test_fold_out_of_range_raises():
    group_folds = assign_folds(["a", "b"], 2, 0)
    with pytest.raises(ValueError, match=r"`fold` must be in \[0, 1\], got 2"):
        split_for_fold({"a": "a", "b": "b"}, group_folds, 2, 0.0, 0)
