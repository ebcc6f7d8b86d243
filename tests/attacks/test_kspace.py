"""Worst-case and random k-space artefacts: energy budget, band limit, gradients, strength, 2D / 3D, registry."""

from __future__ import annotations

import pytest
import torch

from imaseg.attacks import AttackSettings, attack_spec, create_attack, parse_attack_name
from imaseg.attacks.kspace import KSpaceAttack, central_band, kspace_change, relative_change


def conv3d() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv3d(1, 3, 3, padding=1)


def outside_band(delta: torch.Tensor, band: float) -> torch.Tensor:
    """The largest k-space magnitude of ``delta`` outside the central band, relative to its largest inside."""
    spectrum = torch.fft.fftn(delta, dim=tuple(range(2, delta.dim()))).abs()
    mask = central_band(tuple(delta.shape[2:]), band)
    return spectrum[..., ~mask].max() / spectrum[..., mask].max()


def test_band_is_central_and_symmetric():
    mask = central_band((8, 9), 0.5)
    assert mask[0, 0] and not mask[4, 0] and not mask[0, 4]  # zero frequency in, the highest out
    assert torch.equal(mask, torch.roll(mask.flip(0, 1), shifts=(1, 1), dims=(0, 1)))  # k -> -k
    assert central_band((8, 9), 1.0).all()


@pytest.mark.parametrize("kind", ["kspace", "kspace-random"])
def test_change_has_the_stated_energy_and_stays_in_the_band(trained_model, test_batch, kind):
    x, y = test_batch
    eps = torch.linspace(0.02, 0.2, 8)
    result = create_attack(f"{kind}-asr", trained_model, eps=eps, steps=5).run(x, y)
    delta = result.adversarial - x
    assert (relative_change(x, delta) <= eps + 1e-5).all()
    assert torch.allclose(result.norm, relative_change(x, delta), atol=1e-6)
    if kind == "kspace-random":  # drawn at the full budget
        assert torch.allclose(result.norm, eps, atol=1e-4)
    assert outside_band(delta, 0.25) < 1e-4


def test_zero_budget_is_the_identity_and_inputs_are_not_modified(trained_model, test_batch):
    x, y = test_batch
    x_before, y_before = x.clone(), y.clone()
    assert torch.equal(KSpaceAttack(trained_model, eps=0.0, steps=2)(x, y), x)
    KSpaceAttack(trained_model, eps=0.1, steps=2)(x, y)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)


def test_change_gradient_matches_finite_differences():
    x = torch.rand(2, 1, 6, 5, dtype=torch.double)
    mask = central_band((6, 5), 0.5)
    spectrum = torch.randn(2, 1, 6, 5, 2, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda d: x + kspace_change(x, d, mask), (spectrum,))


def test_clip_range_is_respected(trained_model, test_batch):
    x, y = test_batch
    x = x.clamp(0.0, 0.7)
    for optimise in (True, False):
        result = KSpaceAttack(trained_model, eps=0.3, steps=3, optimise=optimise, clip_range=(0.0, 0.7)).run(x, y)
        assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 0.7 + 1e-6
        assert torch.allclose(result.norm, relative_change(x, result.adversarial - x), atol=1e-6)


def test_pgd_is_more_harmful_than_random_artefacts(trained_model, test_batch):
    x, y = test_batch
    settings = AttackSettings(steps=10, noise_draws=100)  # the target: beat 100 random draws
    pgd = create_attack("kspace-asr", trained_model, eps=0.1, settings=settings).run(x, y)
    random = create_attack("kspace-random-asr", trained_model, eps=0.1, settings=settings).run(x, y)
    assert pgd.dice is not None and random.dice is not None
    assert (pgd.dice <= random.dice + 1e-6).all()
    assert pgd.dice.mean() < random.dice.mean() - 0.05


def test_same_seed_same_artefact(trained_model, test_batch):
    x, y = test_batch
    first = KSpaceAttack(trained_model, eps=0.1, steps=2, seed=3)(x, y)
    assert torch.equal(first, KSpaceAttack(trained_model, eps=0.1, steps=2, seed=3)(x, y))
    assert not torch.equal(first, KSpaceAttack(trained_model, eps=0.1, steps=2, seed=4)(x, y))


@pytest.mark.parametrize("optimise", [True, False])
def test_3d_volumes(optimise):
    x, y = torch.rand(2, 1, 8, 8, 6), torch.randint(0, 3, (2, 8, 8, 6))
    result = KSpaceAttack(conv3d(), eps=torch.tensor([0.05, 0.1]), steps=3, optimise=optimise, band=0.5).run(x, y)
    delta = result.adversarial - x
    assert result.adversarial.shape == x.shape
    assert (relative_change(x, delta) <= torch.tensor([0.05, 0.1]) + 1e-5).all()
    assert outside_band(delta, 0.5) < 1e-4


@pytest.mark.parametrize("band", [0.0, 1.5])
def test_band_outside_zero_to_one_is_refused(trained_model, band):
    with pytest.raises(ValueError, match=rf"`band` \(central fraction of k-space\) must be in \(0, 1\], got {band}"):
        KSpaceAttack(trained_model, eps=0.1, band=band)


def test_registry_names_resolve_and_build():
    spec, norm = parse_attack_name("kspace-asr")
    assert (spec.kind, norm, spec.gradient, spec.uses_steps) == ("kspace", "asr", True, True)
    random = attack_spec("kspace-random-asr")
    assert (random.gradient, random.uses_steps, random.unit) == (False, False, spec.unit)
    assert "20 dB below the image" in spec.describe(AttackSettings(steps=7))
    assert "7-step PGD" in spec.describe(AttackSettings(steps=7))
    attack = create_attack("kspace-random-asr", torch.nn.Conv2d(1, 3, 1), eps=0.1, noise_draws=4)
    assert isinstance(attack, KSpaceAttack) and (attack.optimise, attack.draws, attack.norm) == (False, 4, "asr")
    with pytest.raises(ValueError, match="unknown attack 'kspace-l2'"):
        parse_attack_name("kspace-l2")
