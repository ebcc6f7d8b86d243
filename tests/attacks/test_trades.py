"""TRADES' inner maximisation: the KL it maximises, budgets and clipping, label independence, seeds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imaseg.attacks import NoiseAttack, TradesAttack
from imaseg.attacks.geometry import perturbation_norm
from imaseg.functional import kl_per_sample

NORM_CASES = [pytest.param("l2", 0.8, id="l2"), pytest.param("linf", 0.05, id="linf")]


def kl_of(model, images, adversarial) -> torch.Tensor:
    with torch.no_grad():
        return kl_per_sample(model(adversarial), model(images).softmax(1))


def test_kl_per_sample_by_hand():
    clean = torch.tensor([[[[0.5, 0.9]], [[0.5, 0.1]]]])  # (1, 2 classes, 1, 2) probabilities
    adv_logits = torch.tensor([[[[0.0, 0.0]], [[0.0, 0.0]]]])  # uniform prediction
    log_uniform = torch.log(torch.tensor(0.5))
    voxel0 = 0.5 * (torch.log(torch.tensor(0.5)) - log_uniform) * 2
    voxel1 = 0.9 * (torch.log(torch.tensor(0.9)) - log_uniform) + 0.1 * (torch.log(torch.tensor(0.1)) - log_uniform)
    assert kl_per_sample(adv_logits, clean).item() == pytest.approx(((voxel0 + voxel1) / 2).item(), abs=1e-6)


def test_kl_is_zero_for_the_clean_prediction_and_positive_otherwise():
    logits = torch.randn(2, 3, 4, 4)
    assert torch.allclose(kl_per_sample(logits, logits.softmax(1)), torch.zeros(2), atol=1e-6)
    assert (kl_per_sample(logits + torch.randn(2, 3, 4, 4), logits.softmax(1)) > 0).all()
    reference = (
        F.kl_div(F.log_softmax(logits.flip(0), 1), logits.softmax(1), reduction="none").sum(1).flatten(1).mean(1)
    )
    assert torch.allclose(kl_per_sample(logits.flip(0), logits.softmax(1)), reference, atol=1e-6)


@pytest.mark.parametrize("norm,eps", NORM_CASES)
def test_perturbation_stays_in_ball_and_clip_range(trained_model, test_batch, norm, eps):
    images, labels = test_batch
    images = images.clamp(0.0, 0.7)
    result = TradesAttack(trained_model, eps=eps, norm=norm, steps=4, clip_range=(0.0, 0.7)).run(images, labels)
    delta = result.adversarial - images
    assert (perturbation_norm(delta, norm) <= eps * (1 + 1e-5) + 1e-6).all()
    assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 0.7 + 1e-6
    assert torch.allclose(result.norm, perturbation_norm(delta, norm), atol=1e-5)
    assert (result.norm > 0.5 * eps).all(), "the attack should use most of its budget"


def test_kl_beats_same_norm_noise(trained_model, test_batch):
    images, labels = test_batch
    eps = 1.0
    adversarial = TradesAttack(trained_model, eps=eps, steps=5).run(images, labels).adversarial
    noisy = NoiseAttack(trained_model, eps=eps, draws=1).run(images, labels).adversarial
    trades_kl, noise_kl = kl_of(trained_model, images, adversarial), kl_of(trained_model, images, noisy)
    assert (trades_kl > 3 * noise_kl).all(), (trades_kl, noise_kl)


def test_the_label_is_not_used(trained_model, test_batch):
    images, labels = test_batch
    attack = TradesAttack(trained_model, eps=0.5, steps=3, seed=2)
    assert torch.equal(attack(images, labels), attack(images, torch.zeros_like(labels)))


def test_zero_budget_returns_the_input(trained_model, test_batch):
    images, labels = test_batch
    assert torch.equal(TradesAttack(trained_model, eps=0.0, steps=2)(images, labels), images)


def test_same_seed_same_result_other_seed_differs(trained_model, test_batch):
    images, labels = test_batch
    runs = [TradesAttack(trained_model, eps=0.5, steps=2, seed=s)(images, labels) for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"steps": 0}, "`steps` must be >= 1, got 0", id="zero-steps"),
        pytest.param({"alpha_factor": -1.0}, "`alpha_factor` must be >= 0, got -1.0", id="negative-alpha"),
        pytest.param({"eps": -0.1}, "`eps` must be >= 0, got -0.1", id="negative-eps"),
        pytest.param({"norm": "l1"}, "unknown `norm` 'l1'", id="unknown-norm"),
    ],
)
def test_bad_arguments(trained_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TradesAttack(trained_model, **{"eps": 0.5, **kwargs})
