"""IMA's margin search in a physical threat's unit (imaseg.attacks.physical_margin) and IMA trained against it."""

from __future__ import annotations

import pytest
import torch
from conftest import disc_batch

from imaseg.attacks import AttackSettings, create_attack
from imaseg.attacks.margin_search import DicePredicate
from imaseg.attacks.physical_margin import PhysicalMarginSearch, physical_kinds
from imaseg.losses import IMALoss
from imaseg.losses.ima_config import IMAConfig

CLIP = (-1.0, 2.0)


def search(model, tau: float, **changes) -> PhysicalMarginSearch:
    settings = {
        "threat": "bias-field",
        "steps": 4,
        "predicate": DicePredicate(tau, "mean"),
        "clip_range": CLIP,
        "seed": 0,
    }
    return PhysicalMarginSearch(model, **{**settings, **changes})


def test_a_sample_that_survives_keeps_the_worst_case_at_its_margin(trained_model):
    images, labels = disc_batch(4, seed=3)
    before = images.clone()
    margins = torch.tensor([0.1, 0.2, 0.3, 0.4])
    result = search(trained_model, tau=0.0).run(images, labels, eps=margins)
    inner = create_attack("bias-field-rel", trained_model, eps=0.0, settings=AttackSettings(steps=4, clip_range=CLIP))
    inner.generator = torch.Generator().manual_seed(0)
    worst = inner.run(images, labels, eps=margins)
    assert not result.failed.any()  # tau 0: nothing fails
    assert torch.allclose(result.adversarial, worst.adversarial) and torch.allclose(result.boundary, worst.norm)
    assert (result.boundary <= margins + 1e-4).all()
    assert torch.equal(images, before)


def test_a_failing_sample_gets_its_boundary_on_the_ray_inside_the_margin(trained_model):
    images, labels = disc_batch(4, seed=3)
    margins = torch.full((4,), 0.6)
    result = search(trained_model, tau=0.999).run(images, labels, eps=margins)
    inner = create_attack("bias-field-rel", trained_model, eps=0.0, settings=AttackSettings(steps=4, clip_range=CLIP))
    inner.generator = torch.Generator().manual_seed(0)
    worst = inner.run(images, labels, eps=margins)
    failed = result.failed
    assert failed.any()
    fraction = result.boundary / worst.norm  # the boundary is t times the realised budget ...
    assert ((fraction[failed] >= 0) & (fraction[failed] < 1)).all()
    on_ray = images + fraction.view(-1, 1, 1, 1) * (worst.adversarial - images)  # ... at x + t (x_adv - x)
    assert torch.allclose(result.adversarial[failed], on_ray[failed], atol=1e-5)
    assert torch.allclose(result.adversarial[~failed], worst.adversarial[~failed])


def test_only_physical_kinds_are_searched():
    assert {"bias-field", "snr-noise"} <= set(physical_kinds()) and "square" not in physical_kinds()
    with pytest.raises(ValueError, match="`threat` must be one of"):
        PhysicalMarginSearch(torch.nn.Conv2d(1, 3, 1), threat="pgd")


def test_ima_takes_a_physical_threat_in_sample_mode_only():
    with pytest.raises(ValueError, match="needs margin sample"):
        IMAConfig(margin="voxel", threat="bias-field")
    with pytest.raises(ValueError, match="threat"):
        IMAConfig(margin="sample", threat="square")
    assert IMAConfig(margin="sample", threat="bias-field", delta=0.05, eps_max=0.3).threat == "bias-field"


def test_ima_trains_against_a_bias_field_with_margins_in_relative_intensity(trained_model):
    images, labels = disc_batch(2, seed=5)
    settings = IMAConfig(margin="sample", threat="bias-field", delta=0.05, eps_max=0.3, steps=3, bisection_steps=3)
    ima = IMALoss(["a", "b", "c"], settings, clip_range=CLIP, num_classes=3)
    assert isinstance(ima.search(trained_model, torch.Generator()), PhysicalMarginSearch)
    loss, logs = ima(trained_model, images, labels, torch.tensor([2, 0]), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and 0.0 <= float(logs["adv_norm"]) <= 0.05 + 1e-4  # inside the first margin
    ima.bank.end_epoch()
    assert ima.bank.margins[1] == pytest.approx(0.05)  # not visited: unchanged
