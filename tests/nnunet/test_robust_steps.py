"""What a robust nnU-Net trainer does per batch (imaseg.nnunet.robust_steps), on a tiny deep-supervised network
and nnU-Net's loss shape (a list of outputs, a list of targets); needs no nnunetv2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imaseg.functional import dice_ce_per_sample
from imaseg.nnunet.robust_steps import (
    RobustSettings,
    TopOutput,
    build_robust_step,
    robust_step_names,
    top_output,
)

CASES = ["case_a", "case_b", "case_c"]


class TinyDeepSupervised(nn.Module):
    """Two outputs, full and half resolution, as nnU-Net's decoder returns them with deep supervision on."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Conv2d(1, 8, 3, padding=1)
        self.full = nn.Conv2d(8, classes, 1)
        self.coarse = nn.Conv2d(8, classes, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        hidden = torch.relu(self.body(x))
        return [self.full(hidden), self.coarse(F.avg_pool2d(hidden, 2))]


def ds_loss(outputs, targets) -> torch.Tensor:
    """nnU-Net's deep supervision loss in shape: weighted Dice + CE over the scales, a scalar."""
    weights = (2 / 3, 1 / 3)
    return sum(w * dice_ce_per_sample(o.float(), t[:, 0].long()).mean() for w, o, t in zip(weights, outputs, targets))


def batch(size: int = 2):
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(size, 1, 16, 16, generator=generator)
    label = torch.zeros(size, 1, 16, 16)
    label[:, :, 4:10, 4:10] = 1
    label[:, :, 10:14, 2:8] = 2
    targets = [label, F.interpolate(label, scale_factor=0.5, mode="nearest")]
    return data, targets


def settings(method: str, **sections) -> RobustSettings:
    values = {"method": method, "adversarial": {"eps": 2.0, "steps": 3}, **sections}
    return RobustSettings.from_mapping(values)


@pytest.mark.parametrize("method", ["std", "pgd-at", "trades", "ima"])
def test_every_step_gives_a_finite_loss_with_gradients_and_leaves_the_batch_alone(method):
    network, (data, targets) = TinyDeepSupervised(), batch()
    data_before = data.clone()
    step = build_robust_step(settings(method, ima={"steps": 3, "delta": 0.5, "eps_max": 2.0}), CASES, 3)
    loss, logs = step.loss(network, data, targets, ["case_a", "case_b"], 0, torch.Generator().manual_seed(0), ds_loss)
    loss.backward()
    assert torch.isfinite(loss) and "loss_clean" in logs
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in network.parameters())
    assert torch.equal(data, data_before)


def test_pgd_at_mixes_nnunets_loss_on_the_clean_and_the_attacked_batch():
    network, (data, targets) = TinyDeepSupervised(), batch()
    generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    clean_only = build_robust_step(settings("pgd-at", adversarial={"eps": 2.0, "steps": 3, "weight": 0.0}), CASES, 3)
    loss, _ = clean_only.loss(network, data, targets, CASES[:2], 0, generator(), ds_loss)
    assert loss.item() == pytest.approx(ds_loss(network(data), targets).item(), rel=1e-5)
    attacked = build_robust_step(settings("pgd-at", adversarial={"eps": 2.0, "steps": 3, "weight": 1.0}), CASES, 3)
    loss, logs = attacked.loss(network, data, targets, CASES[:2], 0, generator(), ds_loss)
    assert logs["loss_adv"] > logs["loss_clean"]  # the attack raised nnU-Net's own loss
    assert loss.item() == pytest.approx(logs["loss_adv"], rel=1e-5)


def test_pgd_at_budget_ramp_follows_the_epoch():
    step = build_robust_step(settings("pgd-at", adversarial={"eps": 2.0, "steps": 2, "ramp": 0.5}), CASES, 3)
    network, (data, targets) = TinyDeepSupervised(), batch()
    _, first = step.loss(network, data, targets, CASES[:2], 0, torch.Generator().manual_seed(0), ds_loss)
    _, late = step.loss(network, data, targets, CASES[:2], 9, torch.Generator().manual_seed(0), ds_loss)
    assert (first["eps"], late["eps"]) == (0.5, 2.0)


def test_pgd_at_with_the_voxel_weighted_term_uses_the_full_resolution_output():
    chosen = settings("pgd-at", adversarial={"eps": 2.0, "steps": 3, "loss": "voxel-weighted"})
    step = build_robust_step(chosen, CASES, 3)
    network, (data, targets) = TinyDeepSupervised(), batch()
    loss, logs = step.loss(network, data, targets, CASES[:2], 0, torch.Generator().manual_seed(0), ds_loss)
    assert torch.isfinite(loss) and logs["loss_adv"] > 0


def test_trades_at_zero_budget_is_nnunets_clean_loss():
    step = build_robust_step(settings("trades", adversarial={"eps": 0.0, "steps": 2}), CASES, 3)
    network, (data, targets) = TinyDeepSupervised(), batch()
    loss, logs = step.loss(network, data, targets, CASES[:2], 0, torch.Generator().manual_seed(0), ds_loss)
    assert logs["loss_kl"] == pytest.approx(0.0, abs=1e-6)
    assert loss.item() == pytest.approx(ds_loss(network(data), targets).item(), rel=1e-5)


@pytest.mark.parametrize("margin", ["sample", "voxel"])
def test_ima_keeps_one_margin_per_case_and_updates_the_visited_ones(margin):
    chosen = settings("ima", ima={"margin": margin, "steps": 3, "delta": 0.5, "eps_max": 2.0, "tau": 0.0})
    step = build_robust_step(chosen, CASES, 3)
    network, (data, targets) = TinyDeepSupervised(), batch()
    step.loss(network, data, targets, ["case_c", "case_a"], 0, torch.Generator().manual_seed(0), ds_loss)
    stats = step.end_epoch()
    margins = step.state_dict()["ima.bank.margins"]
    # tau 0: every sample survives, so both visited cases grow by delta and the unvisited one keeps its margin
    assert margins.tolist() == [1.0, 0.5, 1.0] and stats["visited_fraction"] == pytest.approx(2 / 3)


def test_ima_refuses_a_case_outside_the_training_cases():
    step = build_robust_step(settings("ima", ima={"steps": 2}), CASES, 3)
    network, (data, targets) = TinyDeepSupervised(), batch()
    with pytest.raises(KeyError, match="not training cases of this fold"):
        step.loss(network, data, targets, ["case_a", "other"], 0, torch.Generator().manual_seed(0), ds_loss)


def test_settings_refuse_a_physical_threat_an_unknown_method_and_unknown_keys():
    with pytest.raises(ValueError, match="not available in nnU-Net trainers"):
        RobustSettings.from_mapping({"method": "pgd-at", "adversarial": {"threat": "bias-field"}})
    with pytest.raises(ValueError, match="method"):
        RobustSettings(method="mart")
    with pytest.raises(ValueError, match="unknown keys"):
        RobustSettings.from_mapping({"method": "pgd-at", "epochs": 3})
    assert set(robust_step_names()) == {"std", "pgd-at", "trades", "ima"}


def test_the_attack_sees_the_full_resolution_output_only():
    network, (data, _) = TinyDeepSupervised(), batch()
    outputs = network(data)
    assert torch.equal(top_output(outputs), outputs[0]) and torch.equal(top_output(outputs[0]), outputs[0])
    assert TopOutput(network)(data).shape == (2, 3, 16, 16)


def test_the_attack_runs_outside_the_training_forwards_precision():
    import contextlib

    state = {"inside": False}
    seen: list[bool] = []

    @contextlib.contextmanager
    def precision():
        state["inside"] = True
        try:
            yield
        finally:
            state["inside"] = False

    class Recording(TinyDeepSupervised):
        def forward(self, x):
            seen.append(state["inside"])
            return super().forward(x)

    step = build_robust_step(settings("pgd-at", adversarial={"eps": 2.0, "steps": 3}), CASES, 3)
    step.precision = precision
    data, targets = batch()
    step.loss(Recording(), data, targets, CASES[:2], 0, torch.Generator().manual_seed(0), ds_loss)
    assert seen[-1] is True and not any(seen[:-1])  # 3 attack steps in float32, then the training forward
