"""Worst-case and random CT intensity changes: HU budget, an affine change of HU, gradients, strength, registry."""

from __future__ import annotations

import pytest
import torch

from imaseg.attacks import AttackSettings, attack_spec, create_attack, parse_attack_name
from imaseg.attacks.hu_shift import CTIntensity, hu_change, intensity_rank


def hu_of_change(adversarial: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (adversarial - x) * 1400.0  # the default window, -1000..400 HU onto [0, 1]


@pytest.mark.parametrize("kind", ["ct-intensity", "ct-intensity-random"])
def test_no_voxel_changes_by_more_than_the_budget_and_the_change_is_affine_in_hu(trained_model, test_batch, kind):
    x, y = test_batch
    eps = torch.linspace(5.0, 50.0, 8)
    result = create_attack(f"{kind}-hu", trained_model, eps=eps, steps=5).run(x, y)
    change = hu_of_change(result.adversarial, x)
    largest = change.flatten(1).abs().amax(dim=1)
    assert (largest <= eps + 1e-3).all()
    assert torch.allclose(result.norm, largest, atol=1e-3)
    if kind == "ct-intensity-random":  # drawn at the full budget
        assert torch.allclose(result.norm, eps, atol=1e-3)
    for sample in range(8):  # a shift plus a gain: the change is an affine function of the input
        design = torch.stack([torch.ones(x[sample].numel()), x[sample].flatten()], dim=1)
        fit = torch.linalg.lstsq(design, change[sample].flatten()[:, None]).solution
        assert (design @ fit - change[sample].flatten()[:, None]).abs().max() < 1e-2


def test_change_is_largest_at_the_darkest_or_brightest_voxel():
    x = torch.tensor([[[[1.0, 2.0, 5.0]]]])
    rank = intensity_rank(x)
    assert hu_change(torch.tensor([[10.0, -30.0]]), rank).flatten().tolist() == [10.0, 0.0, -30.0]


def test_zero_budget_is_the_identity_and_inputs_are_not_modified(trained_model, test_batch):
    x, y = test_batch
    x_before, y_before = x.clone(), y.clone()
    assert torch.equal(CTIntensity(trained_model, eps=0.0, steps=2)(x, y), x)
    assert torch.equal(CTIntensity(trained_model, eps=0.0, optimise=False)(x, y), x)
    CTIntensity(trained_model, eps=20.0, steps=2)(x, y)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)


def test_change_gradient_matches_finite_differences():
    x = torch.rand(2, 1, 5, 4, 3, dtype=torch.double)
    rank = intensity_rank(x)
    params = torch.randn(2, 2, dtype=torch.double, requires_grad=True) * 20
    assert torch.autograd.gradcheck(lambda p: x + hu_change(p, rank) / 1400.0, (params,))


def test_clip_range_is_respected(trained_model, test_batch):
    x, y = test_batch
    x = x.clamp(0.0, 0.7)
    for optimise in (True, False):
        result = CTIntensity(trained_model, eps=200.0, steps=3, optimise=optimise, clip_range=(0.0, 0.7)).run(x, y)
        assert result.adversarial.min() >= 0.0 and result.adversarial.max() <= 0.7 + 1e-6
        assert torch.allclose(result.norm, hu_of_change(result.adversarial, x).flatten(1).abs().amax(1), atol=1e-3)


def test_pgd_is_at_least_as_harmful_as_random_changes(trained_model, test_batch):
    x, y = test_batch
    settings = AttackSettings(steps=10, noise_draws=100)  # the target: beat 100 random draws
    pgd = create_attack("ct-intensity-hu", trained_model, eps=50.0, settings=settings).run(x, y)
    random = create_attack("ct-intensity-random-hu", trained_model, eps=50.0, settings=settings).run(x, y)
    few = create_attack("ct-intensity-random-hu", trained_model, eps=50.0, noise_draws=10).run(x, y)
    assert pgd.dice is not None and random.dice is not None and few.dice is not None
    assert (pgd.dice <= few.dice).all()  # the same 10 draws start the steps
    assert pgd.dice.mean() <= random.dice.mean() + 1e-6


def test_same_seed_same_change(trained_model, test_batch):
    x, y = test_batch
    first = CTIntensity(trained_model, eps=20.0, optimise=False, seed=3)(x, y)
    assert torch.equal(first, CTIntensity(trained_model, eps=20.0, optimise=False, seed=3)(x, y))
    assert not torch.equal(first, CTIntensity(trained_model, eps=20.0, optimise=False, seed=4)(x, y))


@pytest.mark.parametrize("hu_per_unit", [0.0, -1400.0])
def test_hu_per_unit_must_be_positive(trained_model, hu_per_unit):
    with pytest.raises(
        ValueError, match=rf"`hu_per_unit` \(HU per model-input unit\) must be > 0 and finite, got {hu_per_unit}"
    ):
        CTIntensity(trained_model, eps=10.0, hu_per_unit=hu_per_unit)


def test_registry_names_resolve_and_build():
    spec, norm = parse_attack_name("ct-intensity-hu")
    assert (spec.kind, norm, spec.gradient, spec.uses_steps) == ("ct-intensity", "hu", True, True)
    random = attack_spec("ct-intensity-random-hu")
    assert (random.gradient, random.uses_steps, random.unit) == (False, False, spec.unit)
    assert "CT number changes by at most eps HU" in spec.describe(AttackSettings(steps=7))
    attack = create_attack("ct-intensity-random-hu", torch.nn.Conv2d(1, 3, 1), eps=10.0, noise_draws=4)
    assert isinstance(attack, CTIntensity) and (attack.optimise, attack.draws, attack.norm) == (False, 4, "hu")
    with pytest.raises(ValueError, match="unknown attack 'ct-intensity-linf'"):
        parse_attack_name("ct-intensity-linf")


def test_the_hu_scale_comes_from_the_settings_and_defaults_to_imasegs_ct_window():
    from imaseg.attacks import AttackSettings, create_attack

    net = torch.nn.Conv2d(1, 2, 1)
    assert (
        create_attack("ct-intensity-hu", net, eps=10.0, settings=AttackSettings(hu_per_unit=500.0)).hu_per_unit == 500.0
    )
    assert create_attack("ct-intensity-random-hu", net, eps=10.0, settings=AttackSettings()).hu_per_unit == 1400.0


def test_the_evaluation_takes_the_hu_scale_from_the_caches_window():
    from types import SimpleNamespace

    from imaseg.evaluation.config import EvalConfig
    from imaseg.evaluation.plan import case_settings
    from imaseg.evaluation.session import _hu_per_unit

    ct = SimpleNamespace(
        manifest=SimpleNamespace(modality="ct", config={"intensity": "window", "window": [-160.0, 240.0]})
    )
    mr = SimpleNamespace(manifest=SimpleNamespace(modality="mri", config={"intensity": "auto"}))
    z_ct = SimpleNamespace(manifest=SimpleNamespace(modality="ct", config={"intensity": "zscore"}))
    attacks = ["ct-intensity-hu", "pgd-l2"]
    assert _hu_per_unit(ct, attacks) == 400.0 and _hu_per_unit(mr, ["pgd-l2"]) is None
    assert case_settings(EvalConfig(), 2, None, _hu_per_unit(ct, attacks)).attack.hu_per_unit == 400.0
    with pytest.raises(
        ValueError, match="budgets in HU need inputs linear in HU, but the cache's intensity is 'zscore'"
    ):
        _hu_per_unit(z_ct, attacks)


def test_stored_cells_are_told_apart_by_a_non_default_hu_scale(tmp_path):
    from imaseg.evaluation.config import EvalConfig
    from imaseg.evaluation.plan import fingerprint

    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"x")
    config = EvalConfig()
    assert fingerprint(config, checkpoint, ["a"], 1400.0) == fingerprint(config, checkpoint, ["a"])
    assert fingerprint(config, checkpoint, ["a"], 400.0) != fingerprint(config, checkpoint, ["a"])
