"""Budgets in mm: the evaluation passes each case's voxel spacing, along the samples' axes, to the attack."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from imaseg.attacks import AttackSettings, create_attack
from imaseg.evaluation.cells import sample_spacing


def test_the_spacing_of_slices_drops_the_slice_axis_and_keeps_the_plane_order():
    case = SimpleNamespace(image=np.zeros((1, 4, 5, 6)), affine=np.diag([2.0, 3.0, 5.0, 1.0]))
    assert sample_spacing(case, None) == (2.0, 3.0, 5.0)
    assert sample_spacing(case, 2) == (2.0, 3.0)
    assert sample_spacing(case, 0) == (3.0, 5.0)


def test_a_mm_budget_is_measured_with_the_given_spacing():
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    attack = create_attack("affine-mm", net, eps=2.0, settings=AttackSettings(steps=1, spacing=(2.0, 4.0)))
    assert attack.spacing == (2.0, 4.0)
    assert create_attack("affine-mm", net, eps=2.0, settings=AttackSettings(steps=1)).spacing == 1.0
