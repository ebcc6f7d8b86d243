"""Worst-case and random MR bias fields: budget, smoothness, clipping, strength, seeding, 2D / 3D, registry."""

from __future__ import annotations

import pytest
import torch

from imaseg.attacks import AttackSettings, attack_spec, create_attack, parse_attack_name
from imaseg.attacks.bias_field import (
    BiasFieldPGD,
    RandomBiasField,
    bias_field,
    field_amplitude,
    polynomial_basis,
    project_coefficients,
)
from imaseg.networks import build_network


def conv3d() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv3d(1, 3, 3, padding=1)


def relative_change(adversarial: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return ((adversarial - x) / x).flatten(1).abs().amax(dim=1)


def test_basis_is_orthonormal_and_spans_the_low_order_polynomials():
    basis = polynomial_basis((5, 7, 3), 2)
    assert basis.shape == (10, 5, 7, 3)  # 1, 3 linear, 6 quadratic terms
    flat = basis.flatten(1)
    assert torch.allclose(flat @ flat.T / flat.shape[1], torch.eye(10), atol=1e-5)
    assert torch.allclose(basis[0].abs(), torch.ones(5, 7, 3))
    r = torch.linspace(-1, 1, 5)[:, None, None].expand(5, 7, 3)
    for target, inside in ((r.flatten() ** 2, True), (r.flatten() ** 3, False)):  # degree 2 in, 3 out
        residual = target - flat.T @ (flat @ target) / flat.shape[1]
        assert (residual.norm() < 1e-4) == inside


def test_projection_scales_the_field_into_the_budget_and_keeps_its_shape():
    basis = polynomial_basis((16, 16), 3)
    coefficients = torch.randn(4, basis.shape[0])
    eps = torch.tensor([0.05, 0.1, 0.3, 100.0])
    projected = project_coefficients(coefficients, basis, eps)
    amplitude = field_amplitude(projected, basis)
    assert torch.allclose(amplitude[:3], eps[:3], atol=1e-6)
    assert torch.allclose(projected[3], coefficients[3])  # inside the budget: untouched
    ratio = projected / coefficients
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio))  # a scaling, not a change of shape


def test_field_gradient_matches_finite_differences():
    basis = polynomial_basis((6, 6), 3).double()
    coefficients = torch.randn(2, basis.shape[0], dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: bias_field(c, basis), (coefficients,))


@pytest.mark.parametrize("kind", ["bias-field", "bias-field-random"])
def test_field_never_exceeds_the_budget_and_is_smooth(trained_model, test_batch, kind):
    x, y = test_batch
    result = create_attack(f"{kind}-rel", trained_model, eps=0.2, steps=5).run(x, y)
    change = relative_change(result.adversarial, x)
    assert (change <= 0.2 + 1e-5).all()
    assert (result.norm <= 0.2 + 1e-6).all() and (result.norm > 0.05).all()
    field = result.adversarial / x  # a cubic: Markov's inequality bounds its slope by 9 * 0.2 on [-1, 1]
    assert field.diff(dim=-1).abs().max() <= 9 * 0.2 * 2 / 31 + 1e-4


def test_clip_range_is_respected(trained_model, test_batch):
    x, y = test_batch
    x = x.clamp(0.0, 0.7)
    for attack in (
        BiasFieldPGD(trained_model, eps=0.5, steps=3, clip_range=(0.0, 0.7)),
        RandomBiasField(trained_model, eps=0.5, clip_range=(0.0, 0.7)),
    ):
        adversarial = attack(x, y)
        assert adversarial.max() <= 0.7 + 1e-6 and adversarial.min() >= 0.0


def test_pgd_is_at_least_as_harmful_as_random_fields(trained_model, test_batch):
    x, y = test_batch
    settings = AttackSettings(steps=10, noise_draws=100)  # the target: beat 100 random draws
    pgd = create_attack("bias-field-rel", trained_model, eps=0.3, settings=settings).run(x, y)
    random = create_attack("bias-field-random-rel", trained_model, eps=0.3, settings=settings).run(x, y)
    assert pgd.dice is not None and random.dice is not None
    assert pgd.dice.mean() <= random.dice.mean()
    assert pgd.dice.mean() < 0.95  # the attack does something


def test_same_seed_same_field(test_batch):
    x, y = test_batch
    model = build_network("unet", 2, 1, 3, channels=(4, 8), num_res_units=0)
    first = BiasFieldPGD(model, eps=0.1, steps=2, seed=3)(x, y)
    assert torch.equal(first, BiasFieldPGD(model, eps=0.1, steps=2, seed=3)(x, y))
    assert not torch.equal(first, BiasFieldPGD(model, eps=0.1, steps=2, seed=4)(x, y))


@pytest.mark.parametrize("attack_class", [BiasFieldPGD, RandomBiasField])
def test_3d_volumes(attack_class):
    x = torch.rand(2, 1, 8, 8, 6) + 0.5
    y = torch.randint(0, 3, (2, 8, 8, 6))
    result = attack_class(conv3d(), eps=torch.tensor([0.1, 0.2])).run(x, y)
    assert result.adversarial.shape == x.shape
    assert (relative_change(result.adversarial, x) <= torch.tensor([0.1, 0.2]) + 1e-5).all()


def test_zero_budget_leaves_the_image_unchanged(trained_model, test_batch):
    x, y = test_batch
    assert torch.equal(BiasFieldPGD(trained_model, eps=0.0, steps=2)(x, y), x)


def test_budget_of_one_or_more_is_refused(trained_model, test_batch):
    x, y = test_batch
    with pytest.raises(ValueError, match=r"`eps` \(max relative intensity change\) must be < 1, got 1.0"):
        RandomBiasField(trained_model, eps=1.0)(x, y)


def test_registry_names_resolve_and_build():
    spec, norm = parse_attack_name("bias-field-rel")
    assert (spec.kind, norm, spec.gradient) == ("bias-field", "rel", True)
    assert attack_spec("bias-field-random-rel").gradient is False
    assert "up to +/-20 %" in spec.describe(AttackSettings(steps=7))
    assert "7-step PGD" in spec.describe(AttackSettings(steps=7))
    attack = create_attack("bias-field-rel", torch.nn.Conv2d(1, 3, 1), eps=0.1, steps=4, restarts=2)
    assert isinstance(attack, BiasFieldPGD) and (attack.steps, attack.restarts, attack.norm) == (4, 2, "rel")
    with pytest.raises(ValueError, match="unknown attack 'bias-field-l2'"):
        parse_attack_name("bias-field-l2")
