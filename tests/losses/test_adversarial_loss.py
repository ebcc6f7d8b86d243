"""The registered adversarial terms: dice-ce, and voxel-weighted (IMA voxel mode's term, also PGD-AT's option)."""

from __future__ import annotations

import pytest
import torch

from imaseg.attacks.margin_search import DicePredicate, MarginSearch
from imaseg.functional import dice_ce_per_sample, soft_dice_per_sample, weighted_ce_per_sample
from imaseg.losses.adversarial import (
    ADVERSARIAL_LOSSES,
    DiceCELoss,
    VoxelWeightedLoss,
    build_adversarial_loss,
    register_adversarial_loss,
)
from imaseg.losses.margins import MarginBank


def batch():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 6, 6)
    label = torch.randint(0, 3, (2, 6, 6))
    clean = label.clone()
    clean[0, 0, 0] = (label[0, 0, 0] + 1) % 3  # one voxel wrong on the clean input
    flips = torch.full((2, 6, 6), float("inf"))
    flips[1, 2, 2] = 0.3  # one voxel flipped along the path
    return logits, label, clean, flips


def test_dice_ce_is_the_usual_term():
    logits, label, _, _ = batch()
    torch.testing.assert_close(build_adversarial_loss("dice-ce")(logits, label), dice_ce_per_sample(logits, label))
    assert isinstance(build_adversarial_loss("dice-ce"), DiceCELoss)


def test_voxel_weighted_weights_vulnerable_voxels_one_and_the_rest_robust_weight():
    logits, label, clean, flips = batch()
    loss = build_adversarial_loss("voxel-weighted", robust_weight=0.2)
    vulnerable = loss.vulnerable(label, clean, flips)
    assert vulnerable.sum() == 2 and vulnerable[0, 0, 0] and vulnerable[1, 2, 2]
    weight = torch.where(vulnerable, 1.0, 0.2)
    expected = weighted_ce_per_sample(logits, label, weight) + soft_dice_per_sample(logits, label)
    torch.testing.assert_close(loss(logits, label, clean_prediction=clean, flip_radius=flips), expected)


def test_robust_weight_one_is_plain_ce_plus_soft_dice():
    logits, label, clean, flips = batch()
    loss = VoxelWeightedLoss(1.0)(logits, label, clean_prediction=clean, flip_radius=flips)
    torch.testing.assert_close(loss, dice_ce_per_sample(logits, label))


def test_voxel_weighted_needs_the_flip_record_and_matching_shapes():
    logits, label, clean, flips = batch()
    with pytest.raises(ValueError, match="needs `clean_prediction` and `flip_radius`"):
        VoxelWeightedLoss()(logits, label)
    with pytest.raises(ValueError, match="must have the label's shape"):
        VoxelWeightedLoss()(logits, label, clean_prediction=clean[:, :3], flip_radius=flips)
    with pytest.raises(ValueError, match="robust_weight"):
        VoxelWeightedLoss(1.5)


def test_an_unknown_name_lists_the_registered_ones_and_a_name_is_registered_once():
    with pytest.raises(ValueError, match="dice-ce"):
        build_adversarial_loss("focal")
    with pytest.raises(ValueError, match="registered twice"):
        register_adversarial_loss("dice-ce")(VoxelWeightedLoss)
    assert set(ADVERSARIAL_LOSSES) == {"dice-ce", "voxel-weighted"}


def test_a_relative_predicate_lets_a_poorly_segmented_sample_survive_a_tiny_budget():
    torch.manual_seed(0)
    net = torch.nn.Conv2d(1, 3, 1).eval()
    image, label = torch.rand(2, 1, 8, 8), torch.randint(1, 3, (2, 8, 8))  # a random net: clean Dice well below 0.6
    common = {"delta": 1e-6, "steps": 2, "record_flips": True, "start_fraction": 0.0}
    absolute = MarginSearch(net, predicate=DicePredicate(0.6, "mean"), **common).run(image, label, eps=1e-6)
    relative = MarginSearch(net, predicate=DicePredicate(0.6, "mean", relative=True), **common).run(
        image, label, eps=1e-6
    )
    assert absolute.failed.all() and not relative.failed.any()


def test_margin_movement_is_logged_every_epoch():
    bank = MarginBank(["a", "b", "c", "d"], delta=0.25, eps_max=1.0)
    index = torch.arange(4)
    bank.record(index, torch.tensor([0.5, 0.5, 0.1, 0.25]), torch.tensor([True, True, False, False]))
    stats = bank.end_epoch()
    assert stats["margin_grown"] == 0.5 and stats["margin_shrunk"] == 0.25 and stats["margin_changed"] == 0.75
