"""imaseg.monai on MONAI's terms: AMP and the scaler, IterationEvents, the engine's zero-grad setting, no
extra train-mode forward, epoch fields logged in their own epoch, one-hot labels, per-slice budgets under a
SliceInferer, and the best-robust-checkpoint recipe of the README."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("ignite", reason="MONAI's engines need pytorch-ignite (in the test extra)")

from ignite.engine import Events  # noqa: E402
from monai.data import DataLoader, Dataset  # noqa: E402
from monai.engines import SupervisedEvaluator, SupervisedTrainer  # noqa: E402
from monai.engines.utils import IterationEvents  # noqa: E402
from monai.handlers import CheckpointSaver, MeanDice, ValidationHandler, from_engine  # noqa: E402
from monai.inferers import SliceInferer  # noqa: E402
from monai.transforms import AsDiscreted, Compose  # noqa: E402

from imaseg.attacks import AttackSettings  # noqa: E402
from imaseg.monai import AdversarialInferer, RobustDiceMetric, RobustIteration, prepare_batch_with_label  # noqa: E402
from imaseg.monai.labels import class_indices  # noqa: E402


def _data(count: int = 8) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    items = []
    for i in range(count):
        label = (torch.rand(1, 8, 8, generator=generator) > 0.5).float()
        items.append({"image": label.clone(), "label": label, "sample_id": f"case{i}"})
    return items


def _network() -> nn.Module:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0, norm="instance")


def _perfect_network() -> nn.Module:
    network = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        network.weight.copy_(torch.tensor([[[[0.0]]], [[[10.0]]]]))
        network.bias.copy_(torch.tensor([0.0, -5.0]))
    return network


def _trainer(network, iteration, *, epochs=2, handlers=(), **kwargs) -> SupervisedTrainer:
    data = _data()
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=DataLoader(Dataset(data), batch_size=4),
        network=network,
        optimizer=kwargs.pop("optimizer", None) or torch.optim.SGD(network.parameters(), 0.1),
        loss_function=nn.Identity(),
        iteration_update=iteration,
        train_handlers=list(handlers),
        **kwargs,
    )


class _SpyScaler:
    """Records what the step asks of the engine's scaler, and does it."""

    def __init__(self, scaler) -> None:
        self.scaler, self.calls = scaler, []

    def __getattr__(self, name):
        method = getattr(self.scaler, name)

        def record(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return record


def test_amp_trainer_runs_gradient_clipping_on_backward_completed_and_uses_the_scaler():
    network = _network()
    iteration = RobustIteration(network, "pgd-at", num_classes=2, eps=0.5, attack_steps=1)
    trainer = _trainer(network, iteration, amp=True)  # on a CPU machine MONAI's CUDA scaler is disabled
    spies, clipped, events = [], [], []

    @trainer.on(Events.STARTED)
    def spy_on_the_scaler(engine):  # MONAI creates its scaler in run()
        engine.scaler = _SpyScaler(engine.scaler)
        spies.append(engine.scaler)

    @trainer.on(IterationEvents.BACKWARD_COMPLETED)
    def clip(engine):
        engine.scaler.unscale_(engine.optimizer)
        clipped.append(float(torch.nn.utils.clip_grad_norm_(engine.network.parameters(), 1e-3)))
        norm = torch.norm(torch.stack([p.grad.norm() for p in engine.network.parameters() if p.grad is not None]))
        assert float(norm) <= 1e-3 * 1.01, "the optimiser step sees the clipped gradient"

    for event in (IterationEvents.FORWARD_COMPLETED, IterationEvents.LOSS_COMPLETED, IterationEvents.MODEL_COMPLETED):
        trainer.add_event_handler(event, lambda engine, e=event: events.append(e))
    trainer.run()
    assert len(clipped) == trainer.state.iteration == 4, "the clipping handler ran once per iteration"
    per_step = ["scale", "unscale_", "step", "update"]
    assert spies[0].calls == per_step * 4, "backward through scaler.scale, step and update through the scaler"
    expected = [IterationEvents.FORWARD_COMPLETED, IterationEvents.LOSS_COMPLETED, IterationEvents.MODEL_COMPLETED]
    assert events == expected * 4


@pytest.mark.parametrize("set_to_none", [False, True])
def test_the_engines_zero_grad_setting_is_honoured(set_to_none):
    calls = []

    class SGD(torch.optim.SGD):
        def zero_grad(self, set_to_none: bool = True) -> None:
            calls.append(set_to_none)
            super().zero_grad(set_to_none)

    network = _network()
    iteration = RobustIteration(network, "std", num_classes=2)
    optimizer = SGD(network.parameters(), 0.1)
    _trainer(network, iteration, epochs=1, optimizer=optimizer, optim_set_to_none=set_to_none).run()
    assert calls == [set_to_none, set_to_none]


def test_only_the_methods_forward_runs_in_train_mode():
    """Batch norm counts its training forwards: one per step (the loss), none for ``PRED``."""
    network = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    modes = []
    network.register_forward_hook(lambda module, args, out: modes.append(module.training))
    iteration = RobustIteration(network, "std", num_classes=2)
    trainer = _trainer(network, iteration)
    trainer.run()
    assert int(network[1].num_batches_tracked) == trainer.state.iteration == 4
    assert modes == [False, True] * 4, "PRED in eval mode before the step, then the training forward"
    first = trainer.state.output[0]  # decollated by the trainer
    assert first["pred"].shape == (2, 8, 8) and network.training


def test_epoch_fields_are_logged_in_their_own_epoch_by_handlers_attached_first():
    seen = []

    class Logger:  # attached by the trainer's constructor, before anything the step could attach
        def attach(self, engine):
            engine.add_event_handler(
                Events.EPOCH_COMPLETED, lambda e: seen.append(e.state.metrics.get("robust_margin_mean"))
            )

    data = _data()
    network = _network()
    iteration = RobustIteration(
        network, "ima", num_classes=2, sample_ids=[d["sample_id"] for d in data], ima_steps=2, ima_eps_max=0.5
    )
    trainer = _trainer(network, iteration, epochs=3, handlers=[Logger()])
    iteration.attach(trainer)  # harmless: the epoch end runs once
    trainer.run()
    assert len(iteration.history) == 3
    assert seen == [h["margin_mean"] for h in iteration.history], "every epoch, the last included"


def test_one_hot_labels_are_class_indices():
    data = _data()
    onehot = [{**d, "label": torch.cat([1 - d["label"], d["label"]])} for d in data]
    images = torch.stack([d["image"] for d in data])
    assert torch.equal(class_indices(torch.stack([d["label"] for d in onehot]), images), images[:, 0].long())
    with pytest.raises(ValueError, match="a label with 2 channels must be one-hot"):
        class_indices(torch.full((1, 2, 8, 8), 0.5), images[:1])
    values = []
    for items in (data, onehot):
        metric = RobustDiceMetric(_perfect_network(), 2, attack="pgd-l2", eps=1.0, settings=AttackSettings(steps=5))
        metric(images, torch.stack([d["label"] for d in items]))
        values.append(float(metric.aggregate()))
    assert values[0] == values[1] < 1.0
    network = _network()
    trainer = _trainer(network, RobustIteration(network, "pgd-at", num_classes=2, eps=0.5, attack_steps=1))
    trainer.data_loader = DataLoader(Dataset(onehot), batch_size=4)
    trainer.run()
    assert trainer.state.iteration == 4 and torch.isfinite(torch.as_tensor(trainer.state.output[0]["loss"]))


def test_under_a_slice_inferer_every_slice_has_its_own_budget():
    volume = torch.stack([d["image"] for d in _data(6)], -1)[None]  # (1, 1, 8, 8, 6): six slices along D
    inferer = AdversarialInferer(
        "pgd-l2", 1.0, settings=AttackSettings(steps=10), inferer=SliceInferer(spatial_dim=2, roi_size=(8, 8))
    )
    adversarial = inferer.perturb(volume, _perfect_network(), label=volume[:, 0].long())
    norms = (adversarial - volume)[0, 0].flatten(0, 1).norm(dim=0)
    assert norms.shape == (6,) and bool((norms <= 1.0 + 1e-4).all()) and bool((norms > 0.9).all())
    logits = inferer(volume, _perfect_network(), label=volume)
    assert logits.shape == (1, 2, 8, 8, 6) and (logits.argmax(1) != volume[:, 0].long()).sum() >= 6


def test_the_best_robust_checkpoint_recipe_keeps_the_best_robust_dice(tmp_path):
    """README's recipe: ValidationHandler + AdversarialInferer + CheckpointSaver(key_metric_name=...)."""
    network = _network()
    iteration = RobustIteration(network, "pgd-at", num_classes=2, eps=0.5, attack_steps=1)
    post = Compose([AsDiscreted("pred", argmax=True, to_onehot=2), AsDiscreted("label", to_onehot=2)])
    scores = []
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(_data(4)), batch_size=4),
        network=network,
        inferer=AdversarialInferer("pgd-l2", 0.5, settings=AttackSettings(steps=2)),
        prepare_batch=prepare_batch_with_label,
        postprocessing=post,
        key_val_metric={
            "robust_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))
        },
        val_handlers=[
            CheckpointSaver(
                str(tmp_path),
                {"network": network, "method": iteration.method},
                save_key_metric=True,
                key_metric_name="robust_dice",
            )
        ],
    )
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: scores.append(e.state.metrics["robust_dice"]))
    trainer = _trainer(network, iteration, epochs=3, handlers=[ValidationHandler(1, evaluator)])
    trainer.run()
    (saved,) = list(tmp_path.glob("*key_metric=*.pt"))
    assert len(scores) == 3 and evaluator.state.best_metric == max(scores)
    assert f"{max(scores):.4f}" in saved.name
    state = torch.load(saved, weights_only=True)
    assert set(state) == {"network", "method"}
