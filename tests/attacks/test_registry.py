"""The attack registry: every kind's spec, name parsing, building, and adding a kind in one place."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imaseg.attacks import (
    APGD,
    ATTACKS,
    PGD,
    AttackSettings,
    NoiseAttack,
    WorstCase,
    attack_names,
    attack_spec,
    create_attack,
    parse_attack_name,
    register_attack,
)
from imaseg.attacks.registry import ENSEMBLE_MEMBERS
from imaseg.evaluation.config import EvalConfig
from imaseg.metrics.dice import confusion_counts
from imaseg.metrics.worst import mean_global_dice


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Conv2d(1, 3, 3, padding=1)


@pytest.mark.parametrize(
    ("name", "gradient", "uses_steps", "uses_losses", "ensemble"),
    [
        ("pgd-l2", True, True, True, False),
        ("segpgd-linf", True, True, False, False),
        ("cospgd-l2", True, True, False, False),
        ("noise-l2", False, False, False, False),
        ("uniform-linf", False, False, False, False),
        ("worst-l2", True, True, False, True),
        ("apgd-dice-l2", True, True, False, False),
        ("apgd-dlr-linf", True, True, False, False),
    ],
)
def test_specs_say_what_each_kind_is(name, gradient, uses_steps, uses_losses, ensemble):
    spec = attack_spec(name)
    assert (spec.gradient, spec.uses_steps, spec.uses_losses, spec.ensemble) == (
        gradient,
        uses_steps,
        uses_losses,
        ensemble,
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("fgsm-l2", "unknown attack 'fgsm-l2'; choose one of", id="unknown-kind"),
        pytest.param("pgd-l1", "unknown attack 'pgd-l1'", id="unknown-norm"),
        pytest.param("pgd", "unknown attack 'pgd'", id="no-norm"),
    ],
)
def test_bad_names_list_the_valid_ones(name, message):
    with pytest.raises(ValueError, match=message):
        parse_attack_name(name)


def test_names_are_case_insensitive_and_cover_every_kind_and_norm():
    spec, norm = parse_attack_name("CosPGD-Linf")
    assert (spec.kind, norm) == ("cospgd", "linf")
    kinds = {n.rsplit("-", 1)[0] for n in attack_names()}
    assert kinds >= {"pgd", "segpgd", "cospgd", "noise", "uniform", "worst", "apgd-dice", "apgd-dlr"}


@pytest.mark.parametrize(
    ("name", "losses", "expected"),
    [
        ("pgd-l2", ("ce",), PGD),
        ("pgd-l2", ("ce", "dice"), WorstCase),
        ("cospgd-linf", ("ce", "dice"), PGD),
        ("noise-l2", ("ce",), NoiseAttack),
        ("worst-l2", ("ce",), WorstCase),
        ("apgd-dlr-l2", ("ce",), APGD),
    ],
)
def test_create_attack_builds_the_kind(name, losses, expected):
    attack = create_attack(name, model(), eps=0.5, settings=AttackSettings(steps=2, losses=losses))
    assert type(attack) is expected
    assert attack.norm == parse_attack_name(name)[1]


def test_worst_case_runs_its_members_and_is_no_better_than_any():
    net, x = model(), torch.rand(2, 1, 8, 8)
    y = torch.randint(0, 3, (2, 8, 8))
    settings = AttackSettings(steps=3, losses=("ce",), members=("pgd", "cospgd"))
    worst = create_attack("worst-l2", net, eps=1.0, settings=settings)
    assert [type(a).__name__ for a in worst.attacks] == ["PGD", "PGD"]
    result = worst.run(x, y)
    classes = 3
    for member in ("pgd-l2", "cospgd-l2"):
        single = create_attack(member, net, eps=1.0, settings=settings).run(x, y)
        assert _global_dice(result.prediction, y, classes) <= _global_dice(single.prediction, y, classes) + 1e-9


def test_worst_means_the_default_ensemble_wherever_it_is_built():
    worst = create_attack("worst-l2", model(), eps=1.0, settings=AttackSettings(steps=1))
    assert len(worst.attacks) == len(ENSEMBLE_MEMBERS)
    assert EvalConfig().attacks == [f"{kind}-l2" for kind in ENSEMBLE_MEMBERS] + ["worst-l2"]


def _global_dice(prediction, label, classes: int) -> float:
    tp, fp, fn = confusion_counts(prediction, label, classes)
    return float(mean_global_dice(torch.stack([tp[:, 1:], fp[:, 1:], fn[:, 1:]], -1).sum(0).numpy()))


def test_overrides_replace_single_settings_and_unknown_ones_are_refused():
    attack = create_attack("pgd-linf", model(), eps=0.1, steps=4, losses=["dice"], seed=3)
    assert (attack.steps, attack.seed) == (4, 3)
    with pytest.raises(TypeError, match=r"unknown attack settings \['stepz'\]"):
        create_attack("pgd-l2", model(), eps=0.1, stepz=4)


def test_a_new_kind_is_one_registration_and_reaches_every_caller():
    @register_attack("zero", "no perturbation at all", gradient=False, uses_steps=False)
    def build_zero(net, *, eps, norm, settings):
        return NoiseAttack(net, eps=0.0, norm=norm, clip_range=settings.clip_range, seed=settings.seed)

    try:
        spec, norm = parse_attack_name("zero-linf")
        assert spec.describe(AttackSettings()) == "no perturbation at all" and norm == "linf"
        assert "zero-l2" in attack_names()
        x = torch.rand(1, 1, 8, 8)
        assert torch.equal(create_attack("zero-l2", model(), eps=1.0)(x, torch.zeros(1, 8, 8, dtype=torch.long)), x)
        with pytest.raises(ValueError, match="registered twice"):
            register_attack("zero", "again")(lambda *a, **k: None)
    finally:
        ATTACKS.pop("zero", None)


def test_descriptions_fill_in_the_settings():
    text = attack_spec("pgd-l2").describe({"steps": 20, "restarts": 2, "losses": ["ce", "dice"]})
    assert text == (
        "20-step PGD, loss ce+dice (worst iterate per sample; several losses: the worst by global Dice), 2 restart(s)"
    )
