"""MarginSearch (IMA's inner attack) on toy models whose decision boundary is known analytically, and the
DicePredicate that decides "still correct".

The toy segmenter has no parameters: logits ``[0, s * (x - 0.5)]`` per voxel, so a voxel is foreground
exactly while its intensity is above 0.5. A foreground voxel at intensity ``0.5 + m`` therefore sits at
distance ``m`` from its decision boundary.

Why the exact-radius checks use one-voxel images: the random start has radius ``max(E - delta, delta)``
(the official rule), i.e. nearly the whole budget, in a random direction. On an image of many voxels
that start adds a component orthogonal to the attack direction that the projection only slowly removes,
so the boundary point found along the PGD path has a norm well above the minimal-norm distance (the
bisection locates the crossing *of the path*, see ``test_on_many_voxels_the_result_lies_on_the_boundary``).
On a one-voxel image the path is one-dimensional and the crossing is the analytic boundary.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imaseg.attacks import DicePredicate, MarginSearch

STEPS = 20


class Ramp(nn.Module):
    """Two classes; voxel foreground iff x > 0.5."""

    def __init__(self, slope: float = 10.0) -> None:
        super().__init__()
        self.slope = slope

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), self.slope * (x - 0.5)], 1)


class MeanOfSquare(nn.Module):
    """Foreground on ``mask`` iff the mean intensity over the mask exceeds 0.5; background elsewhere."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.mask = mask

    def forward(self, x):
        mask = self.mask.to(x)
        mean = (x * mask).flatten(1).sum(1) / mask.sum()
        foreground = 10.0 * (mean - 0.5).view(-1, 1, 1, 1) * mask - 10.0 * (1 - mask)
        return torch.cat([torch.zeros_like(x), foreground], 1)


class Recorder(nn.Module):
    """Wraps a model and records every input it sees and the prediction it made."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inputs: list[torch.Tensor] = []
        self.predictions: list[torch.Tensor] = []

    def forward(self, x):
        logits = self.inner(x)
        self.inputs.append(x.detach().clone())
        self.predictions.append(logits.detach().argmax(1))
        return logits


MARGINS = torch.tensor([0.1, 0.2, 0.05, 0.3])  # distance of each one-voxel image to its boundary


def one_voxel_batch():
    image = (0.5 + MARGINS).view(-1, 1, 1, 1)
    label = torch.ones(len(MARGINS), 1, 1, dtype=torch.long)
    return image, label


def search(**kwargs) -> MarginSearch:
    settings = {"delta": 1e-4, "steps": STEPS, "bisection_steps": 10}
    settings.update(kwargs)
    return MarginSearch(Ramp(), **settings)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_bisection_finds_the_analytic_boundary(seed):
    image, label = one_voxel_batch()
    eps = 3 * MARGINS
    result = search(seed=seed).run(image, label, eps=eps)
    assert result.failed.all()
    assert torch.allclose(result.boundary, MARGINS, rtol=0.01), (result.boundary, MARGINS)
    assert torch.allclose(result.norm, result.boundary)
    # the adversarial example sits on the decision boundary x = 0.5
    assert torch.allclose(result.adversarial.flatten(), torch.full((4,), 0.5), atol=0.01 * float(MARGINS.min()))


def test_below_the_boundary_nothing_fails_and_the_whole_budget_is_used():
    image, label = one_voxel_batch()
    eps = 0.5 * MARGINS
    result = search().run(image, label, eps=eps)
    assert not result.failed.any()
    assert torch.allclose(result.norm, eps, atol=1e-6)
    assert torch.allclose(result.boundary, result.norm)
    assert (result.prediction == label).all()


def test_budgets_are_per_sample():
    image, label = one_voxel_batch()
    eps = torch.where(torch.arange(4) % 2 == 0, 2 * MARGINS, 0.8 * MARGINS)
    result = search().run(image, label, eps=eps)
    assert result.failed.tolist() == [True, False, True, False]
    assert torch.allclose(result.boundary[::2], MARGINS[::2], rtol=0.01)
    assert torch.allclose(result.boundary[1::2], eps[1::2], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
def test_without_bisection_the_interpolated_boundary_is_within_one_step(seed):
    image, label = one_voxel_batch()
    eps = 3 * MARGINS
    result = search(bisection_steps=0, seed=seed).run(image, label, eps=eps)
    step = 4.0 * eps / STEPS  # alpha_factor * eps / steps
    assert result.failed.all()
    assert ((result.boundary - MARGINS).abs() <= step).all(), (result.boundary, MARGINS, step)
    assert torch.allclose(result.norm, eps, atol=1e-6), "the final iterate is returned, on the sphere"


@pytest.mark.parametrize("bisection_steps", [0, 10], ids=["interpolated", "bisection"])
def test_a_clean_input_that_already_fails_has_its_boundary_at_0(bisection_steps):
    image = torch.tensor([0.4, 0.3]).view(2, 1, 1, 1)  # predicted background, labelled foreground
    label = torch.ones(2, 1, 1, dtype=torch.long)
    eps = 0.09  # too small for any point of the ball to be correct
    result = search(bisection_steps=bisection_steps, delta=0.01).run(image, label, eps=eps)
    assert result.failed.all()
    if bisection_steps:
        assert (result.boundary <= eps / 2**bisection_steps).all(), "bisection from x converges to x"
    else:
        assert (result.boundary == 0).all()


@pytest.mark.parametrize(
    ("eps", "delta", "start"),
    [
        pytest.param(1.0, 0.25, 0.75, id="eps-delta"),
        pytest.param(0.3, 0.25, 0.25, id="at-least-delta"),
        pytest.param(0.1, 0.25, 0.1, id="clamped-to-eps"),
    ],
)
def test_random_start_radius_is_max_of_eps_minus_delta_and_delta(eps, delta, start):
    """With a zero input gradient PGD never moves, so the result is the random start itself."""

    class Flat(nn.Module):
        def forward(self, x):
            logits = torch.zeros(x.shape[0], 2, *x.shape[2:]) + 0.0 * x
            logits[:, 0] += 1.0
            return logits

    image, label = torch.rand(3, 1, 6, 6), torch.zeros(3, 6, 6, dtype=torch.long)
    result = MarginSearch(Flat(), delta=delta, steps=3, bisection_steps=5).run(image, label, eps=eps)
    assert not result.failed.any()
    assert torch.allclose(result.norm, torch.full((3,), start), atol=1e-5)


@pytest.mark.parametrize("factor", [1.5, 3.0], ids=["eps1.5r", "eps3r"])
def test_on_many_voxels_the_result_lies_on_the_boundary(factor):
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    image = 0.4 + 0.2 * mask
    label = mask[:, 0].long()
    nearest = 0.1 * mask.sum().sqrt()  # the minimal-norm perturbation: -0.1 on each of the 16 voxels
    result = MarginSearch(MeanOfSquare(mask), delta=1e-4, steps=STEPS, bisection_steps=10).run(
        image, label, eps=factor * nearest
    )
    shift = ((result.adversarial - image) * mask).sum() / mask.sum()
    assert result.failed.all()
    assert shift.item() == pytest.approx(-0.1, abs=1e-3), "the bisection lands on the mean = 0.5 hyperplane"
    assert result.boundary.item() >= nearest.item() * (1 - 1e-4), "no boundary point is nearer than the analytic one"
    assert result.boundary.item() <= factor * nearest.item() + 1e-5
    assert torch.allclose(result.boundary, (result.adversarial - image).flatten(1).norm(dim=1))


def test_flip_record_matches_the_predictions_along_the_path():
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    g = torch.Generator().manual_seed(0)
    image = 0.4 + 0.2 * mask + 0.05 * torch.rand(2, 1, 8, 8, generator=g)
    label = mask[:, 0].long()
    model = Recorder(Ramp())
    steps = 5
    result = MarginSearch(model, delta=0.1, steps=steps, bisection_steps=0, record_flips=True).run(
        image, label, eps=0.6
    )
    # calls: the clean input, iterates 0 .. steps-1 (with gradients), the final iterate
    assert len(model.predictions) == steps + 2
    clean = model.predictions[0]
    path = torch.stack(model.predictions[1:])  # (steps + 1, B, H, W)
    norms = torch.stack([(x - image).flatten(1).norm(dim=1) for x in model.inputs[1:]])  # (steps + 1, B)

    changed = path != clean
    flipped = torch.isfinite(result.flip_radius)
    assert flipped.any() and not flipped.all(), "the case needs flipped and unflipped voxels"
    assert torch.equal(flipped, changed.any(0)), "a voxel is recorded iff its class changed somewhere on the path"
    assert torch.equal(result.flip_step, torch.where(flipped, changed.int().argmax(0), -1).int())
    for b in range(2):
        for k in result.flip_step[b].unique().tolist():
            if k < 0:
                continue
            at_k = result.flip_step[b] == k
            assert torch.allclose(result.flip_radius[b][at_k], norms[k, b].expand(int(at_k.sum())))
    assert (result.flip_radius[flipped] >= 0.05 - 1e-6).all(), "no voxel can flip before the norm reaches its margin"
    assert (result.flip_radius[flipped] <= 0.6 + 1e-5).all()


# ---- the predicate ----------------------------------------------------------------------------------


def two_class_case():
    """Class 1: 4 voxels predicted perfectly (Dice 1); class 2: 4 voxels, 2 found (Dice 2/3)."""
    label = torch.tensor([[[1, 1, 1, 1, 2, 2, 2, 2, 0, 0]]])
    prediction = torch.tensor([[[1, 1, 1, 1, 2, 2, 0, 0, 0, 0]]])
    return prediction, label


@pytest.mark.parametrize(
    ("reduction", "score", "correct"),
    [
        pytest.param("max", 1.0, True, id="max"),
        pytest.param("mean", (1 + 2 / 3) / 2, True, id="mean"),
        pytest.param("min", 2 / 3, False, id="min"),
    ],
)
def test_dice_predicate_reductions(reduction, score, correct):
    prediction, label = two_class_case()
    predicate = DicePredicate(tau=0.7, reduction=reduction)
    assert predicate.score(prediction, label, 4).item() == pytest.approx(score, abs=1e-6)  # class 3: absent, ignored
    assert predicate(prediction, label, 4).item() is correct


@pytest.mark.parametrize(
    ("false_positives", "correct"),
    [
        pytest.param(0, True, id="none"),
        pytest.param(3, True, id="below-tolerance"),
        pytest.param(5, True, id="at-tolerance"),
        pytest.param(6, False, id="above-tolerance"),
    ],
)
def test_empty_ground_truth_is_correct_up_to_the_tolerance(false_positives, correct):
    tau, tolerance = 0.6, 0.05  # 5 of 100 voxels tolerated
    label = torch.zeros(1, 10, 10, dtype=torch.long)
    prediction = torch.zeros(1, 10, 10, dtype=torch.long)
    prediction.view(-1)[:false_positives] = 2
    predicate = DicePredicate(tau=tau, empty_tolerance=tolerance)
    score = predicate.score(prediction, label, 3).item()
    assert score == pytest.approx(1 - (1 - tau) * (false_positives / 100) / tolerance, abs=1e-6)
    assert predicate(prediction, label, 3).item() is correct
    if false_positives == 5:
        assert score == pytest.approx(tau, abs=1e-7)


@pytest.mark.parametrize("false_positives", [0, 3], ids=["clean", "a-few-voxels"])
def test_the_official_policy_fails_empty_ground_truth_at_once(false_positives):
    label = torch.zeros(2, 10, 10, dtype=torch.long)
    label[1, :3] = 1
    prediction = label.clone()
    prediction[0].view(-1)[:false_positives] = 1
    predicate = DicePredicate(tau=0.6, empty_policy="fail")
    assert predicate(prediction, label, 2).tolist() == [False, True], "the empty sample fails, the other holds"


def test_an_unknown_empty_policy_is_named():
    with pytest.raises(ValueError, match="unknown `empty_policy` 'skip'"):
        DicePredicate(empty_policy="skip")


def test_empty_rule_applies_per_sample_only_to_empty_samples():
    label = torch.zeros(2, 4, 4, dtype=torch.long)
    label[1, :2] = 1
    prediction = torch.zeros(2, 4, 4, dtype=torch.long)
    prediction[1, :2] = 1
    scores = DicePredicate(tau=0.6).score(prediction, label, 2)
    assert scores.tolist() == [1.0, 1.0]
    prediction[1, 0] = 0  # 4 of 8 found: Dice 2/3
    assert DicePredicate(tau=0.6).score(prediction, label, 2)[1].item() == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"tau": 1.5}, r"`tau` must be in \[0, 1\], got 1.5", id="tau>1"),
        pytest.param(
            {"reduction": "median"}, "unknown `dice_reduction` 'median'; choose one of max, mean, min", id="reduction"
        ),
        pytest.param({"empty_tolerance": -0.1}, "`empty_tolerance` must be >= 0", id="negative-tolerance"),
    ],
)
def test_predicate_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DicePredicate(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"bisection_steps": -1}, "`bisection_steps` must be >= 0, got -1", id="negative-bisection"),
        pytest.param({"steps": 0}, "`steps` must be >= 1, got 0", id="zero-steps"),
        pytest.param({"delta": -0.1}, "`delta` must be >= 0, got -0.1", id="negative-delta"),
    ],
)
def test_search_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarginSearch(Ramp(), **kwargs)


def test_same_generator_seed_same_result():
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    image, label = 0.4 + 0.2 * mask, mask[:, 0].long()
    runs = [
        MarginSearch(Ramp(), delta=0.1, steps=4, generator=torch.Generator().manual_seed(s)).run(image, label, eps=0.8)
        for s in (3, 3, 4)
    ]
    assert torch.equal(runs[0].adversarial, runs[1].adversarial) and torch.equal(runs[0].boundary, runs[1].boundary)
    assert not torch.equal(runs[0].adversarial, runs[2].adversarial)


@pytest.mark.parametrize("bisection_steps", [10, 0], ids=["bisection", "interpolation"])
def test_an_outward_path_measures_the_distance_to_the_boundary(bisection_steps):
    """With a small start (``start_fraction``, voxel-level IMA) the path walks out from the clean input, so
    the boundary it reports is the analytic distance, not the current radius as with the official start."""
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    image, label = 0.4 + 0.2 * mask, mask[:, 0].long()
    nearest = (0.1 * mask.sum().sqrt()).item()
    eps = 3 * nearest
    outward = MarginSearch(
        MeanOfSquare(mask),
        delta=1e-4,
        steps=STEPS,
        alpha_factor=1.0,
        start_fraction=0.0,
        bisection_steps=bisection_steps,
    ).run(image, label, eps=torch.tensor([eps]))
    official = MarginSearch(
        MeanOfSquare(mask), delta=1e-4, steps=STEPS, alpha_factor=1.0, bisection_steps=bisection_steps
    ).run(image, label, eps=torch.tensor([eps]))
    assert outward.failed.all() and official.failed.all()
    step = eps / STEPS
    assert abs(outward.boundary.item() - nearest) <= step + 1e-4
    assert official.boundary.item() > 1.5 * nearest, "the official start sits near the sphere, far beyond the boundary"
