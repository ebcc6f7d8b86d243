"""PGD: budgets, clipping, strength against noise, monotonicity in steps, guards, seeds, path record."""

from __future__ import annotations

import pytest
import torch

from imaseg.attacks import PGD, NoiseAttack, SlidingWindowForward, WorstCase
from imaseg.attacks.geometry import perturbation_norm
from imaseg.metrics import sample_dice
from imaseg.metrics.dice import confusion_counts
from imaseg.metrics.worst import mean_global_dice
from imaseg.networks import build_network

NORM_CASES = [pytest.param("l2", 0.8, id="l2"), pytest.param("linf", 0.05, id="linf")]
LOSSES = ["ce", "dice", "dice-ce", "segpgd", "cospgd"]


def clean_dice(model, images, labels):
    with torch.no_grad():
        return sample_dice(model(images).argmax(1), labels, 3)


@pytest.mark.parametrize("norm,eps", NORM_CASES)
@pytest.mark.parametrize("loss", LOSSES)
def test_perturbation_stays_in_ball_and_clip_range(trained_model, test_batch, norm, eps, loss):
    images, labels = test_batch
    images = images.clamp(0.0, 0.7)  # many voxels sit on the bound, so the clip binds
    adv = PGD(trained_model, eps=eps, norm=norm, steps=4, loss=loss, clip_range=(0.0, 0.7)).run(images, labels)
    delta = adv.adversarial - images
    assert (perturbation_norm(delta, norm) <= eps * (1 + 1e-5) + 1e-6).all()
    assert adv.adversarial.min() >= 0.0 and adv.adversarial.max() <= 0.7 + 1e-6
    assert torch.allclose(adv.norm, perturbation_norm(delta, norm), atol=1e-5)


@pytest.mark.parametrize("norm,eps", NORM_CASES)
def test_per_sample_budgets_are_respected_per_sample(trained_model, test_batch, norm, eps):
    images, labels = test_batch
    budgets = torch.linspace(0, eps, images.shape[0])
    result = PGD(trained_model, eps=budgets, norm=norm, steps=5).run(images, labels)
    norms = perturbation_norm(result.adversarial - images, norm)
    assert (norms <= budgets * (1 + 1e-5) + 1e-7).all()
    assert norms[0] == 0
    assert (norms[1:] > 0.5 * budgets[1:]).all(), "the attack should use most of each budget"


def test_zero_budget_returns_the_input_unchanged(trained_model, test_batch):
    images, labels = test_batch
    for norm in ("l2", "linf"):
        adv = PGD(trained_model, eps=0.0, norm=norm, steps=3, clip_range=(0, 1))(images, labels)
        assert torch.equal(adv, images)


def test_pgd_beats_same_norm_noise_by_far(trained_model, test_batch):
    images, labels = test_batch
    clean = clean_dice(trained_model, images, labels).mean()
    assert clean > 0.8, "the fixture model should segment the discs"
    pgd = PGD(trained_model, eps=2.0, steps=10, loss="dice").run(images, labels).dice.mean()
    noise = NoiseAttack(trained_model, eps=2.0, draws=3).run(images, labels).dice.mean()
    assert clean - noise < 0.1, "same-norm noise should barely move Dice"
    assert clean - pgd > 3 * max(clean - noise, 0.02), f"PGD {pgd:.3f} vs noise {noise:.3f} from clean {clean:.3f}"


@pytest.mark.parametrize("loss", ["ce", "dice"])
def test_more_steps_never_do_worse(trained_model, test_batch, loss):
    images, labels = test_batch
    results = [
        PGD(trained_model, eps=1.0, steps=s, alpha=0.15, loss=loss, seed=3).run(images, labels).dice for s in (2, 5, 10)
    ]
    assert (results[1] <= results[0] + 1e-6).all() and (results[2] <= results[1] + 1e-6).all()


def test_restarts_keep_the_per_sample_worst(trained_model, test_batch):
    images, labels = test_batch
    one = PGD(trained_model, eps=0.6, steps=3, restarts=1, seed=5).run(images, labels).dice
    three = PGD(trained_model, eps=0.6, steps=3, restarts=3, seed=5).run(images, labels).dice
    assert (three <= one + 1e-6).all(), "the first restart is the 1-restart run, so 3 restarts can only be worse"


def test_model_state_inputs_and_weight_grads_are_untouched(trained_model, test_batch):
    images, labels = test_batch
    model = trained_model
    model.train()
    model.model[0].eval()  # a mixed mode that must come back exactly
    modes = [m.training for m in model.modules()]
    params = list(model.parameters())
    params[0].requires_grad_(False)
    flags = [p.requires_grad for p in params]
    params[1].grad = torch.full_like(params[1], 7.0)
    params[2].grad = None
    grads = [None if p.grad is None else p.grad.clone() for p in params]
    before_images, before_labels = images.clone(), labels.clone()
    try:
        PGD(model, eps=0.5, steps=2, record_flips=True)(images, labels)
        assert [m.training for m in model.modules()] == modes
        assert [p.requires_grad for p in params] == flags
        for parameter, grad in zip(params, grads):
            assert (parameter.grad is None) if grad is None else torch.equal(parameter.grad, grad)
        assert torch.equal(images, before_images) and torch.equal(labels, before_labels)
    finally:
        params[0].requires_grad_(True)
        params[1].grad = None
        model.eval()


def test_mode_is_restored_when_the_attack_raises(trained_model):
    trained_model.train()

    def boom(_):
        raise RuntimeError("boom")

    wrapped = torch.nn.Sequential(trained_model)
    wrapped.forward = boom  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError, match="boom"):
            PGD(wrapped, eps=0.5, steps=1)(torch.rand(1, 1, 32, 32), torch.zeros(1, 32, 32, dtype=torch.long))
        assert trained_model.training and all(p.requires_grad for p in trained_model.parameters())
    finally:
        trained_model.eval()


def test_output_is_detached_with_input_dtype_shape_device(trained_model, test_batch):
    images, labels = test_batch
    adv = PGD(trained_model, eps=0.5, steps=2)(images.double(), labels[:, None])
    assert adv.dtype == torch.float64 and adv.shape == images.shape and not adv.requires_grad


def test_same_seed_same_result_other_seed_differs(trained_model, test_batch):
    images, labels = test_batch
    a = PGD(trained_model, eps=0.5, steps=2, seed=1)(images, labels)
    b = PGD(trained_model, eps=0.5, steps=2, seed=1)(images, labels)
    c = PGD(trained_model, eps=0.5, steps=2, seed=2)(images, labels)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(
        PGD(trained_model, eps=0.5, steps=2, generator=g1)(images, labels),
        PGD(trained_model, eps=0.5, steps=2, generator=g2)(images, labels),
    )


def test_targeted_attack_moves_prediction_towards_the_target(trained_model, test_batch):
    images, labels = test_batch
    target = labels.clamp(max=1)  # merge the core into the disc: class 2 should disappear
    with torch.no_grad():
        before = (trained_model(images).argmax(1) == target).float().mean()
    result = PGD(trained_model, eps=3.0, steps=10, targeted=True).run(images, target)
    after = (result.prediction == target).float().mean()
    untargeted = PGD(trained_model, eps=3.0, steps=10).run(images, target)
    assert after > before + 0.03 and after > (untargeted.prediction == target).float().mean()


def test_three_d_and_sliding_window_gradients_flow_through_blending():
    torch.manual_seed(0)
    net = build_network("unet", 3, 1, 3, channels=(4, 8), num_res_units=0)
    forward = SlidingWindowForward(net, (16, 16, 16), sw_batch_size=2, overlap=0.25)
    volume, label = torch.rand(1, 1, 24, 28, 20), torch.randint(0, 3, (1, 24, 28, 20))
    x = volume.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(forward(x), label).backward()
    assert x.grad is not None and (x.grad.abs() > 0).float().mean() > 0.9, "every voxel is covered by some window"
    result = PGD(forward, eps=1.0, steps=3, random_start=False).run(volume, label)
    assert result.adversarial.shape == volume.shape
    assert abs(result.norm.item() - 1.0) < 1e-4, "gradient steps should reach the L2 sphere"


def test_checkpointed_windows_give_the_same_input_gradient_and_keep_fewer_tensors():
    torch.manual_seed(0)
    net = build_network("unet", 3, 1, 3, channels=(4, 8), num_res_units=0).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    volume, label = torch.rand(1, 1, 40, 40, 20), torch.randint(0, 3, (1, 40, 40, 20))
    gradients, saved = [], []
    for checkpoint in (True, False):
        forward = SlidingWindowForward(net, (16, 16, 16), sw_batch_size=1, overlap=0.25, checkpoint=checkpoint)
        x = volume.clone().requires_grad_(True)
        sizes: list[int] = []

        def pack(tensor, sizes=sizes):
            sizes.append(tensor.numel())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = torch.nn.functional.cross_entropy(forward(x), label)
        gradients.append(torch.autograd.grad(loss, x)[0])
        saved.append(sum(sizes))
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-4, atol=1e-6)
    assert saved[0] < saved[1] / 2, f"checkpointing keeps window inputs, not activations: {saved}"


def test_flip_record_agrees_with_a_direct_check(trained_model, test_batch):
    images, labels = test_batch
    steps, alpha = 6, 0.2
    record = PGD(trained_model, eps=1.2, steps=steps, alpha=alpha, random_start=False, record_flips=True, select="last")
    result = record.run(images, labels)
    with torch.no_grad():
        clean = trained_model(images).argmax(1)
    assert torch.isinf(result.flip_radius[result.flip_step < 0]).all()
    assert (result.flip_step >= 0).any(), "some voxels must flip at this budget"
    for k in sorted(set(result.flip_step[result.flip_step >= 0].tolist()))[:4]:
        # The k-step run with the same step size ends where the long run's iterate k stood.
        iterate = PGD(trained_model, eps=1.2, steps=k, alpha=alpha, random_start=False, select="last")(images, labels)
        with torch.no_grad():
            prediction = trained_model(iterate).argmax(1)
        radius = perturbation_norm(iterate - images, "l2")
        flipped_here = result.flip_step == k
        assert (prediction[flipped_here] != clean[flipped_here]).all()
        expected = radius.view(-1, 1, 1).expand_as(result.flip_radius)[flipped_here]
        assert torch.allclose(result.flip_radius[flipped_here], expected, atol=1e-5)
        earlier = (result.flip_step > k) | (result.flip_step < 0)
        assert (
            prediction[earlier & (result.flip_step != k)] == clean[earlier & (result.flip_step != k)]
        ).float().mean() > 0.0


def _global_dice(prediction: torch.Tensor, label: torch.Tensor, classes: int) -> float:
    tp, fp, fn = confusion_counts(prediction, label, classes)
    counts = torch.stack([tp[:, 1:], fp[:, 1:], fn[:, 1:]], -1).sum(0).numpy()  # (C-1, 3) over the batch
    return float(mean_global_dice(counts))


def test_worst_case_follows_the_global_rule_and_is_never_above_a_member(trained_model, test_batch):
    images, labels = test_batch
    attacks = [PGD(trained_model, eps=0.6, steps=3, loss=loss) for loss in ("ce", "dice", "segpgd")]
    single = [a.run(images, labels) for a in attacks]
    worst = WorstCase(attacks).run(images, labels)
    classes = int(max(labels.max(), *(s.prediction.max() for s in single))) + 1
    members = [_global_dice(s.prediction, labels, classes) for s in single]
    assert _global_dice(worst.prediction, labels, classes) <= min(members) + 1e-9
    for i, source in enumerate(worst.source.tolist()):  # every sample is one member's own result
        assert torch.equal(worst.prediction[i], single[source].prediction[i])
        assert torch.equal(worst.adversarial[i], single[source].adversarial[i])


def test_select_best_is_refused_with_its_new_name(trained_model):
    with pytest.raises(ValueError, match='"best" was renamed "worst"'):
        PGD(trained_model, eps=0.5, select="best")


def test_seed_none_draws_a_fresh_seed_and_an_int_seed_repeats(trained_model, test_batch):
    images, labels = test_batch
    same = [PGD(trained_model, eps=0.5, steps=1, seed=3)(images, labels) for _ in range(2)]
    fresh = [PGD(trained_model, eps=0.5, steps=1, seed=None)(images, labels) for _ in range(2)]
    assert torch.equal(same[0], same[1])
    assert not torch.equal(fresh[0], fresh[1])


def test_bf16_autocast_keeps_the_perturbation_in_fp32(trained_model, test_batch):
    images, labels = test_batch
    result = PGD(trained_model, eps=0.5, steps=2, autocast_dtype=torch.bfloat16).run(images, labels)
    assert result.adversarial.dtype == torch.float32
    assert (perturbation_norm(result.adversarial - images, "l2") <= 0.5 + 1e-5).all()


BAD_ARGUMENTS = [
    pytest.param({"eps": -0.1}, ValueError, r"`eps` must be >= 0, got -0.1", id="negative-eps"),
    pytest.param(
        {"eps": 0.1, "norm": "l3"}, ValueError, r"unknown `norm` 'l3'; choose one of l2, linf", id="unknown-norm"
    ),
    pytest.param(
        {"eps": 0.1, "loss": "hinge"}, ValueError, r"unknown attack loss 'hinge'; choose one of", id="unknown-loss"
    ),
    pytest.param({"eps": 0.1, "steps": -1}, ValueError, r"`steps` must be >= 0, got -1", id="negative-steps"),
    pytest.param({"eps": 0.1, "restarts": 0}, ValueError, r"`restarts` must be >= 1, got 0", id="no-restarts"),
    pytest.param(
        {"eps": 0.1, "clip_range": (1, 0)}, ValueError, r"`clip_range` must be \(lo, hi\) with lo < hi", id="bad-clip"
    ),
    pytest.param({"eps": torch.ones(2, 2)}, ValueError, r"`eps` tensor must be 1-D", id="eps-matrix"),
    pytest.param({"eps": "big"}, TypeError, r"`eps` must be a float or a tensor, got str", id="eps-string"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD_ARGUMENTS)
def test_bad_arguments_raise_clear_errors(trained_model, kwargs, error, message):
    with pytest.raises(error, match=message):
        PGD(trained_model, **kwargs)


def test_bad_call_arguments_raise_clear_errors(trained_model, test_batch):
    images, labels = test_batch
    attack = PGD(trained_model, eps=torch.ones(3), steps=1)
    with pytest.raises(ValueError, match=r"`eps` has 3 entries for a batch of 8; give one per sample"):
        attack(images, labels)
    with pytest.raises(ValueError, match=r"label shape \(8, 16, 16\) does not match image shape \(8, 1, 32, 32\)"):
        PGD(trained_model, eps=0.1)(images, labels[:, :16, :16])
    with pytest.raises(TypeError, match="integer class indices; got non-integer values"):
        PGD(trained_model, eps=0.1)(images, labels.float() + 0.5)
    with pytest.raises(ValueError, match=r"image values \[.*\] lie outside `clip_range` \(0.0, 0.5\)"):
        PGD(trained_model, eps=0.1, clip_range=(0.0, 0.5))(images, labels)


def test_monai_style_float_labels_with_a_channel_are_accepted(trained_model, test_batch):
    """MONAI's LoadImaged gives (B, 1, H, W) float label maps: the same attack as with integer labels."""
    images, labels = test_batch
    expected = PGD(trained_model, eps=0.5, steps=2)(images, labels)
    assert torch.equal(PGD(trained_model, eps=0.5, steps=2)(images, labels[:, None].float()), expected)
