"""The gradient-free random-search attack: budget, clip range, monotone Dice, seeding, 2D and 3D."""

from __future__ import annotations

import pytest
import torch

from imaseg.attacks import AttackSettings, attack_spec, create_attack
from imaseg.attacks.square import SquareAttack


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_never_leaves_the_ball_and_respects_the_clip_range(trained_model, test_batch, norm):
    x, y = test_batch
    eps = 1.0 if norm == "l2" else 8 / 255
    result = SquareAttack(trained_model, eps=eps, norm=norm, queries=15, clip_range=(0.0, 1.0)).run(x, y)
    delta = result.adversarial - x
    norms = delta.flatten(1).norm(dim=1) if norm == "l2" else delta.flatten(1).abs().amax(1)
    assert (norms <= eps + 1e-5).all()
    torch.testing.assert_close(result.norm, norms)
    assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 1.0


def test_dice_never_rises_the_result_is_the_lowest_dice_the_search_saw(trained_model, test_batch):
    x, y = test_batch
    seen = []

    class Spy(SquareAttack):
        def _measure(self, x, y):
            measured = super()._measure(x, y)
            seen.append(measured[1])
            return measured

    result = Spy(trained_model, eps=2.0, queries=30, seed=3).run(x, y)
    lowest = torch.stack(seen).amin(0)
    torch.testing.assert_close(result.dice, lowest)
    assert len(seen) == 31 and (result.dice <= seen[0]).all(), "never above the clean Dice"
    assert result.dice.mean() < seen[0].mean() - 0.01, "random search at eps 2 should hurt the tiny model"


def test_same_seed_same_result_and_another_seed_differs(trained_model, test_batch):
    x, y = test_batch
    first, second, other = (
        SquareAttack(trained_model, eps=1.0, queries=8, seed=seed).run(x, y).adversarial for seed in (5, 5, 6)
    )
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_three_d_volumes(norm):
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 3, 3, padding=1)
    x, y = torch.rand(2, 1, 6, 7, 5), torch.randint(0, 3, (2, 6, 7, 5))
    result = SquareAttack(net, eps=0.3, norm=norm, queries=6, clip_range=(0.0, 1.0)).run(x, y)
    assert result.adversarial.shape == x.shape and result.prediction.shape == y.shape
    assert (result.norm <= 0.3 + 1e-5).all()


def test_registered_as_a_gradient_free_kind_with_queries_from_the_steps():
    spec = attack_spec("square-linf")
    assert (spec.gradient, spec.uses_steps, spec.ensemble) == (False, True, False)
    attack = create_attack("square-l2", torch.nn.Conv2d(1, 2, 1), eps=0.5, settings=AttackSettings(steps=4))
    assert isinstance(attack, SquareAttack) and attack.queries == 20
    assert "5 x 4 queries" in spec.describe(AttackSettings(steps=4))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"queries": 0}, ValueError, "`queries` must be >= 1, got 0"),
        ({"p_init": 1.5}, ValueError, r"`p_init` must be in \(0, 1\], got 1.5"),
        ({"restarts": 1.0}, TypeError, "`restarts` must be an integer"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        SquareAttack(torch.nn.Conv2d(1, 2, 1), eps=0.5, **kwargs)
