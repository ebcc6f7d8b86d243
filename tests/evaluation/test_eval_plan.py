"""The evaluation plan: cells from the registry, worst-case members, shared attack settings, the headline attack."""

from __future__ import annotations

import pytest
import torch
from eval_helpers import small_config

from imaseg.evaluation.cells import Cell
from imaseg.evaluation.evaluate import main_attack
from imaseg.evaluation.plan import attack_settings, case_settings, plan_cells, worst_members


def test_ensembles_come_after_the_attacks_they_combine():
    cells = plan_cells(small_config(attacks=["worst-l2", "pgd-l2", "cospgd-linf"], eps=[0.5], eps_linf=[0.01]))
    assert [c.key for c in cells] == ["clean", "pgd-l2__eps0.5", "cospgd-linf__eps0.01", "worst-l2__eps0.5"]


def test_worst_members_share_norm_and_budget_and_exclude_ensembles():
    cells = plan_cells(small_config(attacks=["pgd-l2", "noise-l2", "segpgd-linf", "worst-l2"], eps=[0.5, 1.0]))
    members = worst_members(Cell("worst-l2", 1.0), cells)
    assert [c.key for c in members] == ["pgd-l2__eps1", "noise-l2__eps1"]


def test_an_ensemble_without_members_is_refused():
    cells = plan_cells(small_config(attacks=["pgd-linf", "worst-l2"]))
    with pytest.raises(ValueError, match="worst-l2 needs at least one l2 attack"):
        worst_members(Cell("worst-l2", 0.5), cells)


def test_unknown_attacks_are_refused_when_planning():
    with pytest.raises(ValueError, match="unknown attack 'pgd-l3'"):
        plan_cells(small_config(attacks=["pgd-l3"]))


@pytest.mark.parametrize(
    ("attacks", "expected"),
    [
        (["pgd-l2", "noise-l2", "worst-l2"], "worst-l2"),
        (["noise-l2", "cospgd-l2", "pgd-linf"], "cospgd-l2"),
        (["segpgd-linf", "pgd-l2"], "pgd-l2"),
        (["noise-linf"], "noise-linf"),
        ([], None),
    ],
)
def test_main_attack_prefers_l2_worst_case_then_the_configured_losses(attacks, expected):
    assert main_attack(attacks) == expected


def test_settings_are_resolved_once_and_the_config_is_left_alone():
    config = small_config(clip_range=[0, 1], amp=True, roi_size=[16, 16, 8])
    shared = attack_settings(config)
    assert shared.clip_range == (0.0, 1.0) and shared.autocast_dtype is torch.bfloat16
    assert shared.losses == tuple(config.losses)
    assert case_settings(config, 3, [32, 32, 8]).roi_size == (16, 16, 8)
    assert case_settings(config, 2, [32, 32]).roi_size is None
    assert config.clip_range == (0.0, 1.0)  # typed once, when the config is built
