"""The APGD cascade (imaseg.attacks.cascade): members in turn on the samples still standing, the worst kept."""

from __future__ import annotations

import pytest
import torch
from conftest import disc_batch

from imaseg.attacks import APGD, AttackSettings, create_attack
from imaseg.attacks.cascade import CASCADE, APGDCascade, finished_samples
from imaseg.attacks.losses import build_attack_loss
from imaseg.metrics.dice import confusion_counts
from imaseg.metrics.prediction import predict_classes
from imaseg.metrics.worst import mean_global_dice


def global_dice(model, images, labels) -> float:
    with torch.no_grad():
        tp, fp, fn = confusion_counts(predict_classes(model(images)), labels, 3)
    counts = torch.stack([tp[:, 1:], fp[:, 1:], fn[:, 1:]], -1).sum(0).numpy()
    return float(mean_global_dice(counts))


class Counting(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model, self.samples = model, 0

    def forward(self, x):
        self.samples += x.shape[0]
        return self.model(x)


def test_the_cascade_is_never_weaker_than_its_first_member_and_stays_in_budget(trained_model):
    images, labels = disc_batch(8, seed=4)
    before = images.clone()
    cascade = APGDCascade(trained_model, eps=1.0, steps=4, clip_range=(0.0, 1.5))
    adversarial = cascade(images, labels)
    first = APGD(trained_model, eps=1.0, steps=4, loss="dlr", clip_range=(0.0, 1.5), seed=0)(images, labels)
    assert global_dice(trained_model, adversarial, labels) <= global_dice(trained_model, first, labels) + 1e-9
    assert ((adversarial - images).flatten(1).norm(dim=1) <= 1.0 + 1e-4).all()
    assert torch.equal(images, before)


def test_finished_samples_skip_the_later_members(trained_model):
    images, labels = disc_batch(4, seed=4)
    model = Counting(trained_model)
    APGDCascade(model, eps=1000.0, steps=3, clip_range=None)(images, labels)  # the first member erases everything
    first_member_only = 4 * (3 + 2)  # 4 samples x (3 steps + the final and the clean passes, at most)
    assert model.samples <= first_member_only + 8


def test_the_finished_rule_needs_ground_truth_and_no_hit():
    label = torch.tensor([[[0, 2]], [[0, 2]], [[0, 0]]])
    assert finished_samples(torch.tensor([[[0, 1]], [[0, 2]], [[1, 1]]]), label).tolist() == [True, False, False]


def test_the_registered_cascade_takes_the_shared_settings():
    attack = create_attack("apgd-cascade-linf", torch.nn.Conv2d(1, 3, 1), eps=0.01, settings=AttackSettings(steps=5))
    assert isinstance(attack, APGDCascade) and attack.norm == "linf"
    assert [type(m.loss_fn) for m in attack.members()] == [type(build_attack_loss(loss)) for loss, _ in CASCADE]
    assert [m.steps for m in attack.members()] == [5 * k for _, k in CASCADE]
    with pytest.raises(ValueError, match="at least one"):
        APGDCascade(torch.nn.Conv2d(1, 3, 1), eps=0.1, cascade=())
