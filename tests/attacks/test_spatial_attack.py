"""Worst-case and random misregistrations: displacement budget in mm, gradients, strength, 2D / 3D, registry."""

from __future__ import annotations

import math

import pytest
import torch

from imaseg.attacks import AttackSettings, attack_spec, create_attack, parse_attack_name
from imaseg.attacks.spatial import (
    AffineMisregistration,
    displacement_bound,
    field_of_view,
    max_displacement,
    project_onto_budget,
    shift_directions,
    warp,
)


def coordinates(shape: tuple[int, ...], spacing: tuple[float, ...]) -> torch.Tensor:
    """One channel per axis holding each voxel centre's coordinate in mm, ``(1, D, *shape)``: warping it shows
    where each voxel's value came from (linear interpolation is exact on it)."""
    axes = [(torch.arange(n, dtype=torch.float32) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]


def measured_displacement(moved: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Per sample, the largest distance between where a voxel's value came from and the voxel, ``(B,)``."""
    return (moved - grid).norm(dim=1).flatten(1).amax(dim=1)


def test_warp_moves_each_voxel_as_the_transform_says():
    params = torch.tensor([[0.0, 1.5, -0.5]])  # a pure shift of (1.5, -0.5) mm
    grid = coordinates((9, 13), (1.0, 2.0))
    moved = warp(grid, params, field_of_view((9, 13), (1.0, 2.0)))
    interior = moved[..., 2:-2, 1:-1] - grid[..., 2:-2, 1:-1]
    assert torch.allclose(interior, torch.tensor([1.5, -0.5]).view(1, 2, 1, 1).expand_as(interior), atol=1e-5)


@pytest.mark.parametrize("shape", [(12, 10), (8, 7, 6)])
@pytest.mark.parametrize("optimise", [True, False])
def test_no_voxel_moves_further_than_the_budget(shape, optimise):
    torch.manual_seed(0)
    grid = coordinates(shape, (1.0,) * len(shape)).repeat(2, 1, *([1] * len(shape)))
    net = (torch.nn.Conv2d if len(shape) == 2 else torch.nn.Conv3d)(len(shape), 3, 3, padding=1)
    y = torch.randint(0, 3, (2, *shape))
    eps = torch.tensor([1.0, 2.0])
    result = AffineMisregistration(net, eps=eps, steps=3, optimise=optimise).run(grid, y)
    assert (result.norm <= eps + 1e-5).all()
    assert (measured_displacement(result.adversarial, grid) <= result.norm + 1e-4).all()


def test_budget_bounds_the_true_displacement_and_a_shift_reaches_it():
    fov = field_of_view((32, 32))
    params = torch.randn(64, 3)
    assert (max_displacement(params, fov) <= displacement_bound(params) + 1e-5).all()
    shift = torch.tensor([[0.0, 2.0, 0.0]])
    assert torch.allclose(max_displacement(shift, fov), torch.tensor([2.0]))
    rotation = torch.tensor([[1.0, 0.0, 0.0]])  # the corners move along an arc of 1 mm: a chord just under it
    assert 0.999 < max_displacement(rotation, fov).item() < 1.0


def test_projection_is_onto_the_budget_and_keeps_what_fits():
    params = torch.randn(16, 6) * 3
    eps = torch.rand(16) * 2
    projected = project_onto_budget(params, eps)
    assert torch.allclose(displacement_bound(projected), torch.minimum(eps, displacement_bound(params)), atol=1e-5)
    inside = params * 0.01
    assert torch.equal(project_onto_budget(inside, torch.full((16,), 100.0)), inside)


def test_zero_budget_is_the_identity_and_inputs_are_not_modified(trained_model, test_batch):
    x, y = test_batch
    x_before, y_before = x.clone(), y.clone()
    for optimise in (True, False):
        result = AffineMisregistration(trained_model, eps=0.0, steps=2, optimise=optimise).run(x, y)
        assert torch.allclose(result.adversarial, x, atol=1e-5) and (result.norm == 0).all()
    AffineMisregistration(trained_model, eps=2.0, steps=2)(x, y)
    assert torch.equal(x, x_before) and torch.equal(y, y_before)


@pytest.mark.parametrize("shape", [(6, 5), (5, 4, 4)])
def test_warp_gradient_matches_finite_differences(shape):
    torch.manual_seed(0)
    x = torch.rand(2, 1, *shape, dtype=torch.double)
    fov = field_of_view(shape, (1.0, 1.5, 2.0)[: len(shape)])
    params = (torch.rand(2, 3 if len(shape) == 2 else 6, dtype=torch.double) * 0.6 + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: warp(x, p, fov), (params,))
    assert torch.autograd.gradcheck(lambda p: max_displacement(p, fov), (params,))


def test_pgd_is_more_harmful_than_random_misregistrations(trained_model, test_batch):
    x, y = test_batch
    random = create_attack("affine-random-mm", trained_model, eps=2.0, noise_draws=10).run(x, y)
    pgd = create_attack("affine-mm", trained_model, eps=2.0, steps=10).run(x, y)  # the same 10 draws, then steps
    assert pgd.dice is not None and random.dice is not None
    assert (pgd.dice <= random.dice).all() and pgd.dice.mean() < random.dice.mean() - 0.03
    many = create_attack("affine-random-mm", trained_model, eps=2.0, noise_draws=100).run(x, y)

    def loss(image: torch.Tensor) -> float:  # the loss PGD ascends: above that of 100 random draws' worst
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(trained_model(image), y).item()

    assert loss(pgd.adversarial) > loss(many.adversarial)


def test_same_seed_same_misregistration(trained_model, test_batch):
    x, y = test_batch
    first = AffineMisregistration(trained_model, eps=2.0, steps=2, seed=3)(x, y)
    assert torch.equal(first, AffineMisregistration(trained_model, eps=2.0, steps=2, seed=3)(x, y))
    assert not torch.equal(first, AffineMisregistration(trained_model, eps=2.0, steps=2, seed=4)(x, y))


def test_spacing_turns_voxels_into_mm():
    fov = field_of_view((5, 3), (1.0, 2.0))
    assert fov.half.tolist() == [2.0, 2.0] and fov.radius == pytest.approx(math.sqrt(8))
    x, y = torch.rand(1, 1, 9, 9), torch.zeros(1, 9, 9, dtype=torch.long)
    with pytest.raises(ValueError, match=r"must be < 8, half the smallest extent of the field of view, got 8"):
        AffineMisregistration(torch.nn.Conv2d(1, 3, 1), eps=8.0, spacing=(2.0, 3.0)).run(x, y)


@pytest.mark.parametrize(
    ("shape", "spacing", "message"),
    [
        ((9, 1), 1.0, r"needs >= 2 voxels along every spatial axis to move, got \(9, 1\)"),
        ((9, 9), (1.0, 1.0, 1.0), r"`spacing` must be > 0, one value or one per spatial axis \(2\)"),
        ((9, 9), (1.0, 0.0), r"`spacing` must be > 0"),
    ],
)
def test_bad_geometry_is_refused(shape, spacing, message):
    with pytest.raises(ValueError, match=message):
        field_of_view(shape, spacing)


def test_budget_of_half_the_field_of_view_is_refused(trained_model, test_batch):
    x, y = test_batch
    with pytest.raises(ValueError, match=r"`eps` \(max displacement in mm\) must be < 15.5, half the smallest"):
        AffineMisregistration(trained_model, eps=15.5)(x, y)


def test_registry_names_resolve_and_build():
    spec, norm = parse_attack_name("affine-mm")
    assert (spec.kind, norm, spec.gradient, spec.uses_steps) == ("affine", "mm", True, True)
    random = attack_spec("affine-random-mm")
    assert (random.gradient, random.uses_steps, random.unit) == (False, False, spec.unit)
    assert "no voxel moves by more than eps mm" in spec.describe(AttackSettings(steps=7))
    attack = create_attack("affine-mm", torch.nn.Conv2d(1, 3, 1), eps=1.0, steps=10, restarts=2)
    assert isinstance(attack, AffineMisregistration)
    assert (attack.scan, attack.steps, attack.restarts, attack.norm) == (16, 4, 2, "mm")  # 16 shifts, 2/5 of the steps
    with pytest.raises(ValueError, match="unknown attack 'affine-l2'"):
        parse_attack_name("affine-l2")


@pytest.mark.parametrize("dims", [2, 3])
def test_the_scan_tries_pure_shifts_by_the_full_budget_in_directions_spread_evenly(dims):
    x = torch.rand(2, 1, *([9] * dims))
    attack = AffineMisregistration(torch.nn.Identity(), eps=1.0, scan=8)
    eps = torch.tensor([1.0, 2.5])
    draws = list(attack._scan_draws(x, eps, attack._prepare(x, eps), torch.Generator().manual_seed(0)))
    assert len(draws) == 8
    rotations = 1 if dims == 2 else 3
    for params in draws:
        assert torch.equal(params[:, :rotations], torch.zeros(2, rotations))
        assert torch.allclose(params[:, rotations:].norm(dim=1), eps)
    shifts = torch.stack([p[0, rotations:] for p in draws]) / eps[0]
    cosines = shifts @ shifts.T - 2 * torch.eye(8)
    assert cosines.max() < (0.8 if dims == 3 else math.cos(2 * math.pi / 8) + 1e-5)  # no two directions close


def test_shift_directions_turn_at_random_per_sample_and_follow_the_seed():
    first = shift_directions(6, 3, 2, torch.Generator().manual_seed(1))
    again = shift_directions(6, 3, 2, torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.allclose(first[:, 0], first[:, 1])
    assert torch.allclose(first.norm(dim=-1), torch.ones(6, 2), atol=1e-6)
