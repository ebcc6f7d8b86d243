"""IMALoss: loss mixing, one bank visit per sample, sample vs voxel mode, empty ground truth; the
per-sample segmentation losses it is built from."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imaseg.functional import dice_ce_per_sample, soft_dice_per_sample, weighted_ce_per_sample
from imaseg.losses import IMALoss

IDS = [f"case:{i:03d}" for i in range(6)]
NUM_CLASSES = 3


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, NUM_CLASSES, 3, padding=1))


def tiny_batch():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 1, 8, 8, generator=g)
    label = torch.zeros(3, 8, 8, dtype=torch.long)
    label[:, 2:6, 2:6] = 1
    label[:, 3:5, 3:5] = 2
    label[1, :, :] = torch.randint(0, NUM_CLASSES, (8, 8), generator=g)
    return image, label, torch.tensor([4, 0, 2])


def generator(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ima(margin: str, **kwargs) -> IMALoss:
    settings = {"delta": 0.3, "eps_max": 1.0, "steps": 3, "bisection_steps": 4, "num_classes": NUM_CLASSES}
    settings.update(kwargs)
    return IMALoss(IDS, margin=margin, **settings)


def reference_search(loss: IMALoss, model, image, label, index):
    """The inner attack exactly as forward runs it (same generator seed, same margins)."""
    return loss.search(model, generator()).run(image, label, eps=loss.bank.lookup(index))


# ---- per-sample losses ------------------------------------------------------------------------------


def test_weighted_ce_per_sample_is_the_weighted_mean_of_voxel_ce():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]], [[[0.5, 0.5]], [[0.5, -0.5]]]])  # (2, 2, 1, 2)
    target = torch.tensor([[[0, 1]], [[1, 1]]])
    weight = torch.tensor([[[1.0, 3.0]], [[0.0, 2.0]]])
    ce = [
        [-F.log_softmax(torch.tensor([2.0, 0.0]), 0)[0], -F.log_softmax(torch.tensor([0.0, 1.0]), 0)[1]],
        [-F.log_softmax(torch.tensor([0.5, 0.5]), 0)[1], -F.log_softmax(torch.tensor([0.5, -0.5]), 0)[1]],
    ]
    expected = torch.stack([(1 * ce[0][0] + 3 * ce[0][1]) / 4, (0 * ce[1][0] + 2 * ce[1][1]) / 2])
    assert torch.allclose(weighted_ce_per_sample(logits, target, weight), expected, atol=1e-6)


def test_weighted_ce_with_unit_weights_is_the_voxel_mean_ce():
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    expected = F.cross_entropy(logits, target, reduction="none").flatten(1).mean(1)
    assert torch.allclose(weighted_ce_per_sample(logits, target, torch.ones(2, 4, 4)), expected, atol=1e-6)


def test_weighted_ce_with_all_zero_weights_is_zero_not_nan():
    logits, target = torch.randn(1, 3, 4, 4), torch.randint(0, 3, (1, 4, 4))
    assert weighted_ce_per_sample(logits, target, torch.zeros(1, 4, 4)).item() == 0.0


def test_dice_ce_per_sample_is_ce_plus_soft_dice_per_sample():
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    expected = F.cross_entropy(logits, target, reduction="none").flatten(1).mean(1) + soft_dice_per_sample(
        logits, target
    )
    assert torch.allclose(dice_ce_per_sample(logits, target), expected, atol=1e-6)
    alone = torch.stack([dice_ce_per_sample(logits[i : i + 1], target[i : i + 1])[0] for i in range(2)])
    assert torch.allclose(dice_ce_per_sample(logits, target), alone, atol=1e-6), "no mixing across the batch"


def test_dice_ce_rejects_a_mismatched_target():
    with pytest.raises(ValueError, match=r"target shape \(2, 4, 5\) does not match logits \(2, 3, 4, 4\)"):
        dice_ce_per_sample(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 5, dtype=torch.long))


# ---- loss mixing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("margin", ["sample", "voxel"])
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0], ids=["beta0", "beta0.3", "beta1"])
def test_loss_is_the_beta_mix_of_clean_and_adversarial_terms(margin, beta):
    model = tiny_model()
    image, label, index = tiny_batch()
    loss_fn = ima(margin, beta=beta, robust_weight=0.1)
    result = reference_search(loss_fn, model, image, label, index)
    loss, logs = loss_fn(model, image, label, index, generator=generator())

    with torch.no_grad():
        clean_logits, adv_logits = model(image), model(result.adversarial)
    clean = dice_ce_per_sample(clean_logits, label).mean()
    if margin == "sample":
        adv = dice_ce_per_sample(adv_logits, label).mean()
    else:
        vulnerable = (clean_logits.argmax(1) != label) | torch.isfinite(result.flip_radius)
        weight = torch.where(vulnerable, 1.0, 0.1)
        adv = (weighted_ce_per_sample(adv_logits, label, weight) + soft_dice_per_sample(adv_logits, label)).mean()
        assert logs["vulnerable_voxels"] == pytest.approx(float(vulnerable.float().mean()))
    assert loss.item() == pytest.approx(((1 - beta) * clean + beta * adv).item(), abs=1e-5)
    assert logs["loss_clean"] == pytest.approx(clean.item(), abs=1e-5)
    assert logs["loss_adv"] == pytest.approx(adv.item(), abs=1e-5)
    assert logs["inner_failed"] == pytest.approx(result.failed.float().mean().item())
    assert loss.requires_grad, "the loss must train the model"


def test_joint_and_separate_forwards_give_the_same_loss():
    model = tiny_model()
    image, label, index = tiny_batch()
    joint, _ = ima("voxel")(model, image, label, index, generator=generator(), joint_forward=True)
    separate, _ = ima("voxel")(model, image, label, index, generator=generator(), joint_forward=False)
    assert joint.item() == pytest.approx(separate.item(), abs=1e-6)


@pytest.mark.parametrize(
    ("robust_weight", "reference"),
    [
        pytest.param(1.0, "plain", id="robust_weight1-is-plain-dice-ce"),
        pytest.param(0.0, "vulnerable-only", id="robust_weight0-ce-on-vulnerable-only"),
    ],
)
def test_voxel_mode_weights_vulnerable_voxels_1_and_the_rest_robust_weight(robust_weight, reference):
    model = tiny_model()
    image, label, index = tiny_batch()
    loss_fn = ima("voxel", beta=1.0, robust_weight=robust_weight)
    result = reference_search(loss_fn, model, image, label, index)
    loss, _ = loss_fn(model, image, label, index, generator=generator())
    with torch.no_grad():
        clean_pred, adv_logits = model(image).argmax(1), model(result.adversarial)
    if reference == "plain":
        expected = dice_ce_per_sample(adv_logits, label).mean()
    else:
        vulnerable = (clean_pred != label) | torch.isfinite(result.flip_radius)
        assert vulnerable.any() and not vulnerable.all(), "the case needs both kinds of voxel"
        ce = F.cross_entropy(adv_logits, label, reduction="none")
        per_sample = torch.stack([ce[i][vulnerable[i]].mean() for i in range(len(index))])
        expected = (per_sample + soft_dice_per_sample(adv_logits, label)).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


# ---- the bank and the modes ----------------------------------------------------------------------------


@pytest.mark.parametrize("margin", ["sample", "voxel"])
def test_forward_records_one_visit_per_sample(margin):
    model = tiny_model()
    image, label, index = tiny_batch()
    loss_fn = ima(margin)
    result = reference_search(loss_fn, model, image, label, index)
    loss_fn(model, image, label, index, generator=generator())
    bank = loss_fn.bank
    expected_visits = torch.zeros(len(IDS), dtype=torch.int64)
    expected_visits[index] = 1
    assert torch.equal(bank.visits, expected_visits)
    assert torch.equal(bank.survived[index], (~result.failed).long())
    assert torch.allclose(bank.estimate[index], (0.3 + result.boundary) / 2)
    assert torch.equal(bank.margins, torch.full((len(IDS),), 0.3)), "margins change only at end_epoch"


def test_modes_differ_as_documented():
    model = tiny_model()
    sample, voxel = ima("sample", bisection_steps=7), ima("voxel", bisection_steps=7)
    sample_search, voxel_search = sample.search(model, generator()), voxel.search(model, generator())
    assert sample.predicate.reduction == "max" and voxel.predicate.reduction == "mean"
    assert sample_search.bisection_steps == 7 and not sample_search.record_flips
    assert voxel_search.bisection_steps == 0 and voxel_search.record_flips, "voxel mode interpolates, no bisection"
    assert ima("voxel", dice_reduction="min").predicate.reduction == "min"

    image, label, index = tiny_batch()
    _, sample_logs = sample(model, image, label, index, generator=generator())
    _, voxel_logs = voxel(model, image, label, index, generator=generator())
    assert sample_logs["vulnerable_voxels"] != sample_logs["vulnerable_voxels"]  # NaN: not a voxel-mode quantity
    assert 0.0 <= voxel_logs["vulnerable_voxels"] <= 1.0
    assert int(voxel.voxel_stats.voxels.sum()) == int((label > 0).sum()), "voxel mode fills the flip statistics"
    assert int(sample.voxel_stats.voxels.sum()) == 0


class PredictsBackground(nn.Module):
    """Predicts background everywhere whatever the input (zero input gradient, still connected to it)."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 2, *x.shape[2:], device=x.device) + 0.0 * x
        logits[:, 0] += 5.0
        return logits


@pytest.mark.parametrize("margin", ["sample", "voxel"])
def test_empty_ground_truth_predicted_empty_is_not_failed_at_radius_0(margin):
    model = PredictsBackground()
    image = torch.rand(2, 1, 8, 8)
    label = torch.zeros(2, 8, 8, dtype=torch.long)
    label[1, 2:6, 2:6] = 1  # sample 1 has foreground the model misses: it fails at once
    loss_fn = IMALoss(["empty", "missed"], margin=margin, delta=0.2, eps_max=1.0, steps=2, num_classes=2)
    _, logs = loss_fn(model, image, label, torch.tensor([0, 1]), generator=generator())
    assert logs["inner_failed"] == 0.5
    loss_fn.bank.end_epoch()
    empty_margin, missed_margin = loss_fn.bank.margins.tolist()
    assert empty_margin == pytest.approx(0.4), "the empty slice survived: its margin grows by delta"
    assert missed_margin < 0.2 / 2 + 0.02, "the missed slice failed near radius 0: its margin about halves"


def test_empty_ground_truth_with_a_false_positive_blob_fails():
    class Blob(PredictsBackground):
        def forward(self, x):
            logits = super().forward(x)
            logits[:, 1, :3, :3] += 10.0  # 9 of 64 voxels predicted foreground, far above the tolerance
            return logits

    loss_fn = IMALoss(["empty"], margin="voxel", delta=0.2, eps_max=1.0, steps=2, num_classes=2)
    _, logs = loss_fn(
        Blob(), torch.rand(1, 1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long), torch.tensor([0]), generator=generator()
    )
    assert logs["inner_failed"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"margin": "pixel"}, "unknown `margin` 'pixel'; choose one of sample, voxel", id="unknown-margin"),
        pytest.param({"beta": 1.5}, r"`beta` must be in \[0, 1\], got 1.5", id="beta>1"),
        pytest.param({"tau": -0.1}, r"`tau` must be >= 0, got -0.1", id="negative-tau"),
        pytest.param({"tau": 1.2}, r"`tau` must be in \[0, 1\], got 1.2", id="tau>1"),
        pytest.param({"dice_reduction": "median"}, "unknown `dice_reduction` 'median'", id="unknown-reduction"),
        pytest.param({"steps": 0}, "`steps` must be >= 1, got 0", id="zero-steps"),
        pytest.param({"robust_weight": 2.0}, r"`robust_weight` must be in \[0, 1\]", id="robust_weight>1"),
        pytest.param({"delta": 2.0}, r"`delta` \(2.0\) must not exceed `eps_max` \(1.0\)", id="delta>eps_max"),
    ],
)
def test_bad_arguments_raise_with_a_message(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IMALoss(IDS, **{"eps_max": 1.0, **kwargs})


@pytest.mark.parametrize("margin", ["sample", "voxel"])
def test_forward_reads_nothing_back_from_the_device(margin, monkeypatch):
    """The logs stay 0-dim tensors and the flip statistics copy in the background: besides the inner
    attack, forward reads only the host-side ``index`` (no ``item`` / ``float`` / ``cpu`` on results)."""
    from imaseg.attacks.margin_search import MarginSearch

    model = tiny_model()
    image, label, index = tiny_batch()
    loss_fn = ima(margin)
    result = reference_search(loss_fn, model, image, label, index)
    monkeypatch.setattr(MarginSearch, "run", lambda self, *args, **kwargs: result)
    reads: list[str] = []
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    loss, logs = loss_fn(model, image, label, index, generator=generator())
    monkeypatch.undo()
    assert reads == ["tolist"], "only the bank's host-side index list"
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for k, v in logs.items() if k != "vulnerable_voxels")
    assert float(logs["inner_failed"]) == pytest.approx(result.failed.float().mean().item())
