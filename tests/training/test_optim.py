"""The optimiser, learning-rate schedule and augmentation a training config builds."""

from __future__ import annotations

import pytest
import torch

from imaseg.training.augment import BatchAugment
from imaseg.training.config import TrainConfig
from imaseg.training.optim import build_augment, build_optimizer, lr_factor


@pytest.mark.parametrize(
    ("settings", "epoch", "expected"),
    [
        pytest.param({"warmup_epochs": 3}, 0, 0.25, id="warmup-first-epoch"),
        pytest.param({"warmup_epochs": 3}, 2, 0.75, id="warmup-last-epoch"),
        pytest.param({"warmup_epochs": 0, "schedule": "constant"}, 7, 1.0, id="constant"),
        pytest.param({"warmup_epochs": 0, "schedule": "cosine", "epochs": 10}, 0, 1.0, id="cosine-start"),
        pytest.param({"warmup_epochs": 0, "schedule": "cosine", "epochs": 10}, 5, 0.5, id="cosine-middle"),
        pytest.param({"warmup_epochs": 2, "schedule": "cosine", "epochs": 12}, 7, 0.5, id="cosine-after-warmup"),
        pytest.param({"warmup_epochs": 0, "schedule": "poly", "epochs": 10}, 5, 0.5**0.9, id="poly-middle"),
    ],
)
def test_lr_factor(settings, epoch, expected):
    assert lr_factor(TrainConfig(**settings), epoch) == pytest.approx(expected)


@pytest.mark.parametrize(("name", "kind"), [("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_build_optimizer(name, kind):
    network = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(TrainConfig(optimizer=name, lr=0.01, weight_decay=0.001), network)
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert optimizer.param_groups[0]["weight_decay"] == 0.001


def test_build_augment_follows_the_switch():
    assert build_augment(TrainConfig(augment=False)) is None
    augment = build_augment(TrainConfig(augment=True, aug_rotate=10.0))
    assert isinstance(augment, BatchAugment)
