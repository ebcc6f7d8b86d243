"""APGD (adaptive step, momentum, checkpoints) and the DLR loss: the documented behaviour on a tiny model."""

from __future__ import annotations

import pytest
import torch
from conftest import disc_batch

from imaseg.attacks import APGD, PGD, NoiseAttack
from imaseg.attacks.apgd import _StepState, apgd_checkpoints
from imaseg.attacks.losses import build_attack_loss
from imaseg.attacks.losses.dlr import dlr_per_voxel
from imaseg.metrics.dice import sample_dice


@pytest.mark.parametrize(("norm", "eps"), [("l2", 1.0), ("linf", 8 / 255)])
@pytest.mark.parametrize("loss", ["dlr", "dice"])
def test_perturbation_stays_in_ball_and_clip_range(trained_model, test_batch, norm, eps, loss):
    x, y = test_batch
    before = x.clone()
    adv = APGD(trained_model, eps=eps, norm=norm, steps=8, loss=loss, clip_range=(0.0, 1.0))(x, y)
    delta = (adv - x).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(1)
    assert (size <= eps * (1 + 1e-5)).all() and adv.min() >= 0 and adv.max() <= 1
    assert torch.equal(x, before), "the input is not modified"


def test_apgd_dice_beats_noise_and_reports_the_dice_of_what_it_returns(trained_model, test_batch):
    x, y = test_batch
    result = APGD(trained_model, eps=2.0, steps=10, loss="dice", clip_range=(0.0, 1.0)).run(x, y)
    noise = NoiseAttack(trained_model, eps=2.0, clip_range=(0.0, 1.0)).run(x, y)
    assert result.dice.mean() < noise.dice.mean() - 0.1
    with torch.no_grad():
        prediction = trained_model(result.adversarial).argmax(1)
    assert torch.allclose(result.dice, sample_dice(prediction, y, 3))


def test_apgd_is_at_least_as_strong_as_fixed_step_pgd_here(trained_model):
    x, y = disc_batch(16, seed=7)
    apgd = APGD(trained_model, eps=1.0, steps=20, loss="dice", clip_range=(0.0, 1.0)).run(x, y)
    pgd = PGD(trained_model, eps=1.0, steps=20, loss="dice", clip_range=(0.0, 1.0)).run(x, y)
    assert apgd.dice.mean() <= pgd.dice.mean() + 0.02


def test_restarts_keep_the_per_sample_worst(trained_model, test_batch):
    x, y = test_batch
    one = APGD(trained_model, eps=1.0, steps=5, restarts=1, seed=3).run(x, y)
    two = APGD(trained_model, eps=1.0, steps=5, restarts=2, seed=3).run(x, y)
    assert (two.dice <= one.dice + 1e-6).all()


def test_flip_record_is_a_path_norm_within_the_budget(trained_model, test_batch):
    x, y = test_batch
    result = APGD(trained_model, eps=1.0, steps=6, record_flips=True, clip_range=(0.0, 1.0)).run(x, y)
    finite = result.flip_radius[torch.isfinite(result.flip_radius)]
    assert finite.numel() > 0 and (finite <= 1.0 + 1e-5).all()
    assert ((result.flip_step >= 0) == torch.isfinite(result.flip_radius)).all()


def test_checkpoints_follow_croce_and_hein():
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert all(0 < c < 10 for c in apgd_checkpoints(10))


def test_a_stalled_sample_halves_its_step_and_restarts_from_its_best_point():
    eps = torch.tensor([1.0, 1.0])
    state = _StepState(eps, torch.zeros(2, 1, 2, 2))
    losses = [torch.tensor([0.1, 0.5]), torch.tensor([0.2, 0.4]), torch.tensor([0.3, 0.3]), torch.tensor([0.4, 0.2])]
    for k, loss in enumerate(losses):
        state.observe(loss, torch.full((2, 1, 2, 2), float(k)), torch.ones(2, 1, 2, 2))
    reset = state.checkpoint(4, rho=0.75)
    assert reset.tolist() == [False, True], "sample 0 rose 3 of 4 times, sample 1 never"
    assert state.eta.tolist() == [2.0, 1.0]
    assert state.best_delta[1].unique().tolist() == [0.0], "sample 1's best point is its first iterate"


def test_dlr_by_hand_and_invariant_to_logit_scale_and_shift():
    logits = torch.tensor([3.0, 1.0, 0.0, -1.0]).view(1, 4, 1, 1)
    correct, wrong = torch.tensor([[[0]]]), torch.tensor([[[1]]])
    assert dlr_per_voxel(logits, correct).item() == pytest.approx((1 - 3) / (3 - 0))
    assert dlr_per_voxel(logits, wrong).item() == pytest.approx((3 - 1) / (3 - 0))
    assert dlr_per_voxel(5 * logits + 2, wrong).item() == pytest.approx(dlr_per_voxel(logits, wrong).item())


def test_dlr_with_two_classes_has_a_gradient():
    logits = torch.randn(2, 2, 4, 4, requires_grad=True)
    target = torch.randint(0, 2, (2, 4, 4))
    loss = build_attack_loss("dlr")(logits, target).sum()
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rho": 1.5}, r"`rho` must be in \[0, 1\]"),
        ({"steps": 0}, "`steps` must be"),
        ({"loss": "nope"}, "unknown attack loss"),
    ],
)
def test_bad_arguments_raise_clear_errors(trained_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        APGD(trained_model, eps=1.0, **kwargs)


@pytest.mark.parametrize(
    ("kind", "loss"), [("apgd-balanced-ce", "balanced-ce"), ("apgd-masked-ce", "masked-ce"), ("apgd-js", "js")]
)
def test_the_sea_losses_are_registered_apgd_kinds_that_lower_dice(trained_model, kind, loss):
    from imaseg.attacks import AttackSettings, create_attack
    from imaseg.metrics.prediction import predict_classes

    images, labels = disc_batch(4, seed=7)
    attack = create_attack(f"{kind}-l2", trained_model, eps=2.0, settings=AttackSettings(steps=5))
    assert type(attack.loss_fn) is type(build_attack_loss(loss))
    result = attack.run(images, labels)
    with torch.no_grad():
        clean = sample_dice(predict_classes(trained_model(images)), labels, 3)
    assert result.dice.mean() < clean.mean() - 0.05
