"""IMAConfig: IMA's settings checked once, when built; IMALoss takes them whole (or single settings by name)."""

from __future__ import annotations

import dataclasses

import pytest

from imaseg.config import config_from_dict
from imaseg.losses import IMAConfig, IMALoss


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        pytest.param(
            {"margin": "pixel"}, ValueError, "unknown `margin` 'pixel'; choose one of sample, voxel", id="margin"
        ),
        pytest.param({"delta": -0.1}, ValueError, r"`delta` must be >= 0, got -0.1", id="negative-delta"),
        pytest.param({"eps_max": float("inf")}, ValueError, r"`eps_max` must be >= 0, got inf", id="infinite-eps"),
        pytest.param({"delta": 2.0}, ValueError, r"`delta` \(2.0\) must not exceed `eps_max` \(1.0\)", id="delta"),
        pytest.param({"eps_min": 1.5}, ValueError, r"`eps_min` \(1.5\) must not exceed `eps_max` \(1.0\)", id="floor"),
        pytest.param({"beta": 1.5}, ValueError, r"`beta` must be in \[0, 1\], got 1.5", id="beta"),
        pytest.param({"tau": -0.2}, ValueError, r"`tau` must be >= 0, got -0.2", id="tau"),
        pytest.param({"dice_reduction": "median"}, ValueError, "unknown `dice_reduction` 'median'", id="reduction"),
        pytest.param({"steps": 0}, ValueError, "`steps` must be >= 1, got 0", id="steps"),
        pytest.param({"steps": 2.5}, TypeError, r"`steps` must be an integer, got 2.5", id="steps-type"),
        pytest.param({"bisection_steps": -1}, ValueError, "`bisection_steps` must be >= 0, got -1", id="bisection"),
        pytest.param({"empty_tolerance": 2}, ValueError, r"`empty_tolerance` must be in \[0, 1\]", id="tolerance"),
        pytest.param({"empty_policy": "pass"}, ValueError, "unknown `empty_policy` 'pass'", id="policy"),
        pytest.param({"robust_weight": -1}, ValueError, "`robust_weight` must be >= 0, got -1", id="robust-weight"),
        pytest.param({"voxel_start": 1.2}, ValueError, r"`voxel_start` must be in \[0, 1\]", id="voxel-start"),
        pytest.param({"voxel_alpha_factor": -2}, ValueError, "`voxel_alpha_factor` must be >= 0", id="voxel-alpha"),
    ],
)
def test_bad_settings_are_refused_when_built(settings, error, match):
    with pytest.raises(error, match=match):
        IMAConfig(**settings)


def test_a_training_config_checks_its_ima_section_when_read():
    from imaseg.training.config import TrainConfig

    with pytest.raises(ValueError, match=r"`tau` must be in \[0, 1\], got 1.5"):
        config_from_dict(TrainConfig, {"ima_tau": 1.5})


def test_settings_are_normalised_and_frozen():
    settings = IMAConfig(margin="Sample", delta=1, empty_policy="FAIL")
    assert (settings.margin, settings.delta, settings.empty_policy) == ("sample", 1.0, "fail")
    assert isinstance(settings.delta, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.delta = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("settings", "reduction"),
    [
        pytest.param({"margin": "sample"}, "max", id="sample-default"),
        pytest.param({"margin": "voxel"}, "mean", id="voxel-default"),
        pytest.param({"margin": "sample", "dice_reduction": "min"}, "min", id="explicit"),
    ],
)
def test_the_predicate_reduction_follows_the_mode(settings, reduction):
    assert IMAConfig(**settings).reduction == reduction


def test_replace_checks_again_and_names_unknown_settings():
    settings = IMAConfig()
    assert settings.replace(delta=0.5).delta == 0.5 and settings.delta == 0.25
    with pytest.raises(ValueError, match=r"`beta` must be in \[0, 1\]"):
        settings.replace(beta=2.0)
    with pytest.raises(TypeError, match=r"unknown IMA settings \['detla'\]; valid: margin, delta, "):
        settings.replace(detla=0.5)


def test_the_loss_takes_the_settings_whole_or_by_name():
    settings = IMAConfig(margin="sample", delta=0.2, eps_max=0.8, steps=3, tau=0.5, robust_weight=0.3)
    whole = IMALoss(["a", "b"], settings, num_classes=3)
    by_name = IMALoss(["a", "b"], margin="sample", delta=0.2, eps_max=0.8, steps=3, tau=0.5, robust_weight=0.3)
    assert whole.settings == by_name.settings == settings
    assert (whole.margin, whole.bank.delta, whole.bank.eps_max, whole.predicate.tau) == ("sample", 0.2, 0.8, 0.5)
    assert IMALoss(["a"], settings, steps=5).settings.steps == 5, "a single setting replaces the object's"
    with pytest.raises(TypeError, match=r"unknown IMA settings \['step'\]"):
        IMALoss(["a"], step=5)
