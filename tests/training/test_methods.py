"""Training methods: each batch loss is the documented formula over the documented inner attack."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_train_config
from torch import nn

from imaseg.attacks import PGD, TradesAttack
from imaseg.functional import dice_ce_per_sample, kl_per_sample
from imaseg.training.methods import PGDAT, IMAMethod, Standard, Trades, build_method, has_batch_norm

IDS = [f"s:{i:03d}" for i in range(5)]


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1))


def batch():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(2, 1, 8, 8, generator=g)
    labels = torch.randint(0, 3, (2, 8, 8), generator=g)
    return images, labels, torch.tensor([3, 1])


def generator() -> torch.Generator:
    return torch.Generator().manual_seed(11)


@pytest.mark.parametrize(
    ("method", "cls"),
    [("std", Standard), ("pgd-at", PGDAT), ("trades", Trades), ("ima", IMAMethod)],
)
def test_build_method_by_name(method, cls):
    built = build_method(tiny_train_config(method=method), network(), IDS, 3)
    assert type(built) is cls and built.name == method
    assert built.joint_forward, "no batch norm: clean and adversarial halves go through one forward"


def test_batch_norm_networks_forward_clean_and_adversarial_separately():
    bn = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3))
    assert has_batch_norm(bn) and not has_batch_norm(network())
    assert not build_method(tiny_train_config(method="pgd-at"), bn, IDS, 3).joint_forward


def test_standard_loss_is_the_mean_dice_ce():
    net = network()
    images, labels, index = batch()
    loss, logs = build_method(tiny_train_config(method="std"), net, IDS, 3).loss(
        net, net, images, labels, index, generator()
    )
    assert loss.item() == pytest.approx(dice_ce_per_sample(net(images), labels).mean().item(), abs=1e-6)
    assert logs == {}


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0], ids=["w0", "w0.5", "w1"])
def test_pgd_at_mixes_clean_and_pgd_adversarial_losses(weight):
    net = network()
    images, labels, index = batch()
    config = tiny_train_config(method="pgd-at", adv_weight=weight, eps=0.4, attack_steps=3, clip_range=None)
    loss, logs = build_method(config, net, IDS, 3).loss(net, net, images, labels, index, generator())
    adversarial = PGD(
        net,
        eps=0.4,
        steps=3,
        alpha_factor=config.adversarial.alpha_factor,
        loss="dice-ce",
        select="last",
        generator=generator(),
    )(images, labels)
    assert not torch.equal(adversarial, images)
    with torch.no_grad():
        clean, adv = dice_ce_per_sample(net(images), labels).mean(), dice_ce_per_sample(net(adversarial), labels).mean()
    assert adv > clean, "the adversarial term is the larger one"
    assert loss.item() == pytest.approx(((1 - weight) * clean + weight * adv).item(), abs=1e-5)
    assert float(logs["loss_adv"]) == pytest.approx(adv.item(), abs=1e-5)
    assert ("loss_clean" in logs) == (weight < 1.0), "w = 1 trains on the adversarial batch only"


def test_trades_is_clean_loss_plus_beta_kl():
    net = network()
    images, labels, index = batch()
    config = tiny_train_config(method="trades", trades_beta=6.0, eps=0.4, attack_steps=3, clip_range=None)
    loss, logs = build_method(config, net, IDS, 3).loss(net, net, images, labels, index, generator())
    adversarial = TradesAttack(
        net, eps=0.4, steps=3, alpha_factor=config.adversarial.alpha_factor, generator=generator()
    )(images, labels)
    with torch.no_grad():
        clean_logits = net(images)
        clean = dice_ce_per_sample(clean_logits, labels).mean()
        kl = kl_per_sample(net(adversarial), clean_logits.softmax(1)).mean()
    assert kl > 0
    assert loss.item() == pytest.approx((clean + 6.0 * kl).item(), abs=1e-5)
    assert {k: float(v) for k, v in logs.items()} == pytest.approx(
        {"loss_clean": clean.item(), "loss_kl": kl.item()}, abs=1e-5
    )


def test_ima_method_keeps_margins_in_its_state_and_updates_them_at_end_epoch():
    net = network()
    images, labels, index = batch()
    config = tiny_train_config(method="ima", ima_delta=0.2, ima_tau=0.0)  # tau 0: every sample survives
    method = build_method(config, net, IDS, 3)
    state = method.state_dict()
    assert torch.equal(state["ima.bank.margins"], torch.full((5,), 0.2))
    assert state["ima.bank._extra_state"]["sample_ids"] == IDS
    loss, logs = method.loss(net, net, images, labels, index, generator())
    assert loss.requires_grad and float(logs["inner_failed"]) == 0.0
    stats = method.end_epoch()
    assert method.ima.bank.margins.tolist() == pytest.approx([0.2, 0.4, 0.2, 0.4, 0.2])
    assert stats["visited_fraction"] == pytest.approx(2 / 5) and stats["fail_fraction"] == 0.0


def test_the_inner_attack_leaves_the_network_trainable():
    net = network()
    net.train()
    images, labels, index = batch()
    for name in ("pgd-at", "trades", "ima"):
        method = build_method(tiny_train_config(method=name, clip_range=None), net, IDS, 3)
        loss, _ = method.loss(net, net, images, labels, index, generator())
        net.zero_grad()
        loss.backward()
        assert net.training and all(p.requires_grad and p.grad is not None for p in net.parameters()), name


@pytest.mark.parametrize("weight", [0.5, 1.0], ids=["w0.5", "w1"])
def test_pgd_at_with_the_voxel_weighted_loss_trains_on_ima_voxel_modes_term(weight):
    from imaseg.losses.adversarial import VoxelWeightedLoss
    from imaseg.metrics.prediction import predict_classes

    net = network()
    images, labels, index = batch()
    config = tiny_train_config(
        method="pgd-at", adv_weight=weight, eps=0.4, attack_steps=3, clip_range=None, adversarial_loss="voxel-weighted"
    )
    method = build_method(config, net, IDS, 3)
    loss, _ = method.loss(net, net, images, labels, index, generator())
    result = PGD(
        net,
        eps=0.4,
        steps=3,
        alpha_factor=config.adversarial.alpha_factor,
        loss="dice-ce",
        select="last",
        record_flips=True,
        generator=generator(),
    ).run(images, labels)
    with torch.no_grad():
        clean_logits = net(images)
        adv = VoxelWeightedLoss(config.adversarial.robust_weight)(
            net(result.adversarial),
            labels,
            clean_prediction=predict_classes(clean_logits),
            flip_radius=result.flip_radius,
        ).mean()
        clean = dice_ce_per_sample(clean_logits, labels).mean()
    assert loss.item() == pytest.approx(((1 - weight) * clean + weight * adv).item(), abs=1e-5)
    assert "voxel-weighted loss" in PGDAT.label(config)


def test_a_budget_ramp_grows_eps_per_epoch_up_to_eps_and_resumes_at_its_epoch(tmp_path):
    config = tiny_train_config(method="pgd-at", eps=1.0, adversarial_ramp=0.25)
    method = build_method(config, network(), IDS, 3)
    method.resume(tmp_path, 0)
    budgets = []
    for _ in range(6):
        budgets.append(method.attack_arguments(generator())["eps"])
        method.end_epoch()
    assert budgets == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    method.resume(tmp_path, 2)
    assert method.attack_arguments(generator())["eps"] == 0.75
    assert PGDAT.label(config) == "PGD-AT (eps 1.0, ramp 0.25/epoch, reaches eps 0.5 in 2 epochs)"  # cut short
    full = tiny_train_config(method="pgd-at", eps=1.0, adversarial_ramp=0.25, epochs=4)
    assert PGDAT.label(full) == "PGD-AT (eps 1.0, ramp 0.25/epoch)"
    rounded = tiny_train_config(method="pgd-at", eps=0.9, adversarial_ramp=0.3, epochs=3)  # 0.3 * 3 < 0.9 in floats
    assert PGDAT.label(rounded) == "PGD-AT (eps 0.9, ramp 0.3/epoch)"
    trades = tiny_train_config(method="trades", eps=1.0, adversarial_ramp=0.25, epochs=2)
    assert Trades.label(trades) == "TRADES (eps 1.0, ramp 0.25/epoch, reaches eps 0.5 in 2 epochs)"
    assert Trades.label(tiny_train_config(method="trades", eps=1.0)) == "TRADES (eps 1.0)"
    one = tiny_train_config(method="pgd-at", eps=8.0, adversarial_ramp=1.0, epochs=1)
    assert PGDAT.label(one) == "PGD-AT (eps 8.0, ramp 1/epoch, reaches eps 1 in 1 epoch)"
    with pytest.raises(ValueError, match="`ramp` must be >= 0, got -1"):
        tiny_train_config(method="pgd-at", adversarial_ramp=-1.0)


def test_pgd_at_trains_against_a_physical_threat_in_its_own_unit():
    from imaseg.attacks import AttackSettings, create_attack

    net = network()
    images, labels, index = batch()
    config = tiny_train_config(
        method="pgd-at", adv_weight=1.0, eps=0.2, attack_steps=3, adversarial_threat="bias-field"
    )
    loss, logs = build_method(config, net, IDS, 3).loss(net, net, images, labels, index, generator())
    attack = create_attack("bias-field-rel", net, eps=0.2, settings=AttackSettings(steps=3, clip_range=(0.0, 1.0)))
    attack.generator = generator()
    adversarial = attack(images, labels)
    ratio = adversarial / images.clamp_min(1e-6)
    assert not torch.equal(adversarial, images)
    assert ((ratio - 1).abs()[images > 0.05] <= 0.2 + 1e-4).all(), "a multiplicative field within +/-20 %"
    with torch.no_grad():
        expected = dice_ce_per_sample(net(adversarial), labels).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert PGDAT.label(config) == "PGD-AT (bias-field, eps 0.2)"
    assert PGDAT.settings_text(config).startswith("bias-field, eps 0.2 rel")


def test_physical_threats_are_refused_where_they_cannot_work():
    with pytest.raises(ValueError, match="needs the flip record of a PGD path; threat bias-field has none"):
        build_method(
            tiny_train_config(method="pgd-at", adversarial_threat="bias-field", adversarial_loss="voxel-weighted"),
            network(),
            IDS,
            3,
        )
    with pytest.raises(ValueError, match="`adversarial.threat` bias-field is not supported by trades"):
        build_method(tiny_train_config(method="trades", adversarial_threat="bias-field"), network(), IDS, 3)
    with pytest.raises(ValueError, match="threat"):
        tiny_train_config(method="pgd-at", adversarial_threat="square")  # gradient-free: not a training threat


def test_ima_trains_against_a_physical_threat_with_margins_in_its_unit():
    config = tiny_train_config(
        method="ima", ima_margin="sample", ima_threat="bias-field", ima_delta=0.05, ima_eps_max=0.3, ima_steps=2
    )
    method = build_method(config, network(), IDS, 3)
    net = network()
    images, labels, index = batch()
    loss, logs = method.loss(net, net, images, labels, index, generator())
    assert torch.isfinite(loss) and float(logs["adv_norm"]) <= 0.05 + 1e-4  # inside the first margin, +/-5 %
    assert IMAMethod.label(config) == "IMA (sample, bias-field)"
    assert IMAMethod.settings_text(config).startswith("bias-field margins, delta 0.05")
