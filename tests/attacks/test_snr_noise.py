"""Noise at a stated SNR: energy from the SNR, clipping, strength against the random baseline, seeding, 3D."""

from __future__ import annotations

import math

import pytest
import torch

from imaseg.attacks import AttackSettings, attack_spec, create_attack, parse_attack_name
from imaseg.attacks.snr_noise import SNRNoise, nsr_of_snr, signal_rms, snr_db


def measured_nsr(adversarial: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return signal_rms(adversarial - x) / signal_rms(x)


def test_decibels_and_ratios_convert_both_ways():
    assert snr_db(0.1) == pytest.approx(20.0)
    assert snr_db(0.0) == math.inf
    assert nsr_of_snr(snr_db(0.037)) == pytest.approx(0.037)


def test_random_noise_has_exactly_the_stated_snr(trained_model, test_batch):
    x, y = test_batch
    result = create_attack("snr-noise-random-nsr", trained_model, eps=nsr_of_snr(20.0)).run(x, y)
    assert torch.allclose(measured_nsr(result.adversarial, x), torch.full((8,), 0.1), atol=1e-5)
    assert torch.allclose(result.norm, torch.full((8,), 0.1), atol=1e-5)


def test_worst_case_noise_stays_within_the_energy_of_the_snr(trained_model, test_batch):
    x, y = test_batch
    eps = torch.linspace(0.02, 0.2, 8)
    result = create_attack("snr-noise-nsr", trained_model, eps=eps, steps=5).run(x, y)
    assert (measured_nsr(result.adversarial, x) <= eps + 1e-5).all()
    assert torch.allclose(result.norm, measured_nsr(result.adversarial, x), atol=1e-5)


def test_clip_range_is_respected(trained_model, test_batch):
    x, y = test_batch
    x = x.clamp(0.0, 0.7)
    for optimise in (True, False):
        adversarial = SNRNoise(trained_model, eps=0.5, steps=3, optimise=optimise, clip_range=(0.0, 0.7))(x, y)
        assert adversarial.max() <= 0.7 + 1e-6 and adversarial.min() >= 0.0


def test_pgd_is_at_least_as_harmful_as_random_noise(trained_model, test_batch):
    x, y = test_batch
    settings = AttackSettings(steps=10, noise_draws=100)  # the target: beat 100 random draws
    pgd = create_attack("snr-noise-nsr", trained_model, eps=0.1, settings=settings).run(x, y)
    random = create_attack("snr-noise-random-nsr", trained_model, eps=0.1, settings=settings).run(x, y)
    assert pgd.dice is not None and random.dice is not None
    assert (pgd.dice <= random.dice + 1e-6).all()
    assert pgd.dice.mean() < random.dice.mean() - 0.05


def test_same_seed_same_noise(trained_model, test_batch):
    x, y = test_batch
    first = SNRNoise(trained_model, eps=0.1, steps=2, seed=3)(x, y)
    assert torch.equal(first, SNRNoise(trained_model, eps=0.1, steps=2, seed=3)(x, y))
    assert not torch.equal(first, SNRNoise(trained_model, eps=0.1, steps=2, seed=4)(x, y))


@pytest.mark.parametrize("optimise", [True, False])
@pytest.mark.parametrize("distribution", ["gaussian", "rician"])
def test_3d_volumes(optimise, distribution):
    torch.manual_seed(0)
    x, y = torch.rand(2, 1, 8, 8, 6), torch.randint(0, 3, (2, 8, 8, 6))
    model = torch.nn.Conv3d(1, 3, 3, padding=1)
    result = SNRNoise(model, eps=0.1, steps=3, optimise=optimise, distribution=distribution).run(x, y)
    assert result.adversarial.shape == x.shape
    assert (result.norm <= 0.1 + 1e-5).all()
    if distribution == "gaussian":
        assert (measured_nsr(result.adversarial, x) <= 0.1 + 1e-5).all()


def test_registry_names_resolve_and_build():
    spec, norm = parse_attack_name("snr-noise-nsr")
    assert (spec.kind, norm, spec.gradient, spec.uses_steps) == ("snr-noise", "nsr", True, True)
    random = attack_spec("snr-noise-random-nsr")
    assert (random.gradient, random.uses_steps) == (False, False)
    assert "20 dB" in spec.describe(AttackSettings())
    attack = create_attack("snr-noise-random-nsr", torch.nn.Conv2d(1, 3, 1), eps=0.1, noise_draws=4)
    assert isinstance(attack, SNRNoise) and (attack.optimise, attack.draws, attack.norm) == (False, 4, "nsr")
    rician = create_attack("rician-noise-nsr", torch.nn.Conv2d(1, 3, 1), eps=0.1, steps=3)
    assert isinstance(rician, SNRNoise) and (rician.distribution, rician.optimise, rician.steps) == ("rician", True, 3)
    with pytest.raises(ValueError, match="unknown attack 'snr-noise-linf'"):
        parse_attack_name("snr-noise-linf")


def test_rician_noise_is_the_magnitude_of_complex_noise_at_the_stated_snr(trained_model, test_batch):
    x, y = test_batch
    x = x.clamp(0.0, 1.0)
    x[:, :, :4] = 0.0  # a dark band: Rician noise lifts it (the noise floor of magnitude images)
    result = create_attack("rician-noise-random-nsr", trained_model, eps=0.1, clip_range=(0.0, 1.0)).run(x, y)
    assert torch.allclose(result.norm, torch.full((8,), 0.1), atol=1e-5)
    adversarial = result.adversarial
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    floor = adversarial[:, :, :4].mean() / signal_rms(x).mean()
    assert 0.05 < floor < 0.2  # the mean of a Rayleigh variable of scale sigma: 1.25 sigma, sigma = 0.1 RMS
    assert torch.allclose(SNRNoise(trained_model, eps=0.0, distribution="rician", optimise=False)(x, y), x, atol=1e-5)


def test_worst_case_rician_noise_beats_random_rician_noise(trained_model, test_batch):
    x, y = test_batch
    settings = AttackSettings(steps=10, noise_draws=100)
    pgd = create_attack("rician-noise-nsr", trained_model, eps=0.1, settings=settings).run(x, y)
    random = create_attack("rician-noise-random-nsr", trained_model, eps=0.1, settings=settings).run(x, y)
    assert pgd.dice is not None and random.dice is not None
    assert pgd.dice.mean() < random.dice.mean() - 0.05
    assert pgd.adversarial.shape == x.shape and (pgd.norm <= 0.1 + 1e-5).all()


def test_unknown_distribution_is_refused(trained_model):
    with pytest.raises(ValueError, match="unknown `distribution` 'poisson'; choose one of gaussian, rician"):
        SNRNoise(trained_model, eps=0.1, distribution="poisson")


def test_rician_magnitude_gradient_matches_finite_differences():
    from imaseg.attacks.snr_noise import _Magnitude

    magnitude = _Magnitude(torch.nn.Identity(), 1, None)
    stacked = torch.randn(2, 2, 5, 5, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(magnitude, (stacked,))
