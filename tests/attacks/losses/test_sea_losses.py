"""The losses of SEA's segmentation ensemble: balanced CE, masked CE, Jensen-Shannon."""

import math

import pytest
import torch
import torch.nn.functional as F

from imaseg.attacks.losses import build_attack_loss
from imaseg.attacks.losses.balanced_ce import BalancedCrossEntropyAttackLoss
from imaseg.attacks.losses.jensen_shannon import JensenShannonAttackLoss
from imaseg.attacks.losses.masked_ce import MaskedCrossEntropyAttackLoss

NAMES = ["balanced-ce", "masked-ce", "js"]


@pytest.mark.parametrize("name", NAMES)
def test_registered_per_sample_and_differentiable(name):
    logits = torch.randn(3, 4, 5, 6, requires_grad=True)
    target = torch.randint(0, 4, (3, 5, 6))
    loss = build_attack_loss(name)(logits, target)
    assert loss.shape == (3,)
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_values_are_independent(name):
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    loss = build_attack_loss(name)
    both = loss(logits, target)
    assert torch.allclose(both[1], loss(logits[1:], target[1:])[0])


@pytest.mark.parametrize("name", NAMES)
def test_shape_mismatch_is_refused(name):
    with pytest.raises(ValueError, match="does not match logits"):
        build_attack_loss(name)(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))


def test_balanced_ce_weighs_each_present_class_equally():
    logits = torch.randn(1, 3, 1, 10)
    target = torch.tensor([[[0] * 9 + [2]]])
    ce = F.cross_entropy(logits, target, reduction="none")[0, 0]
    expected = (ce[:9].mean() + ce[9]) / 2
    assert torch.allclose(BalancedCrossEntropyAttackLoss()(logits, target)[0], expected)


def test_masked_ce_ignores_voxels_already_wrong():
    target = torch.zeros(1, 1, 4, dtype=torch.long)
    all_wrong = torch.tensor([[[[-5.0] * 4], [[5.0] * 4]]])
    assert float(MaskedCrossEntropyAttackLoss()(all_wrong, target)[0]) == 0.0
    assert float(MaskedCrossEntropyAttackLoss()(-all_wrong, target)[0]) > 0.0
    # targeted: only the voxels not yet at the target count
    assert float(MaskedCrossEntropyAttackLoss()(-all_wrong, target, targeted=True)[0]) == 0.0


def test_js_is_bounded_and_signed_for_targeted_attacks():
    logits = torch.randn(2, 3, 6, 6) * 20
    target = torch.randint(0, 3, (2, 6, 6))
    value = JensenShannonAttackLoss()(logits, target)
    assert (value >= 0).all() and (value <= math.log(2) + 1e-6).all()
    assert torch.allclose(JensenShannonAttackLoss()(logits, target, targeted=True), -value)
