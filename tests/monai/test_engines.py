"""imaseg inside MONAI's engines: SupervisedTrainer with robust steps, SupervisedEvaluator under attack,
RobustDiceMetric. Synthetic 8 x 8 data whose label is the thresholded image, and a 1 x 1 convolution that
segments it perfectly, so Dice under attack has a known clean value (1) to fall from."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("ignite", reason="MONAI's engines need pytorch-ignite (in the test extra)")

from monai.data import DataLoader, Dataset  # noqa: E402
from monai.engines import SupervisedEvaluator, SupervisedTrainer  # noqa: E402
from monai.handlers import MeanDice, from_engine  # noqa: E402
from monai.transforms import AsDiscreted, Compose  # noqa: E402

from imaseg.attacks import AttackSettings  # noqa: E402
from imaseg.monai import AdversarialInferer, RobustDiceMetric, RobustIteration, prepare_batch_with_label  # noqa: E402


def _data(count: int = 8) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    items = []
    for i in range(count):
        label = (torch.rand(1, 8, 8, generator=generator) > 0.5).float()  # (1, H, W) float, as LoadImaged gives
        items.append({"image": label.clone(), "label": label, "sample_id": f"case{i}"})
    return items


def _perfect_network() -> nn.Module:
    """logit(1) - logit(0) = 10 (x - 0.5): a perfect segmenter of ``_data``; flipping a voxel costs 0.5."""
    network = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        network.weight.copy_(torch.tensor([[[[0.0]]], [[[10.0]]]]))
        network.bias.copy_(torch.tensor([0.0, -5.0]))
    return network


def _small_unet() -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0, norm="instance")


@pytest.mark.parametrize("method", ["pgd-at", "trades", "ima"])
def test_supervised_trainer_runs_each_robust_method(method):
    data = _data()
    network = _small_unet()
    iteration = RobustIteration(
        network,
        method,
        num_classes=2,
        sample_ids=[d["sample_id"] for d in data],
        eps=0.5,
        attack_steps=2,
        ima_steps=2,
        ima_delta=0.1,
        ima_eps_max=0.5,
    )
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=DataLoader(Dataset(data), batch_size=4, shuffle=True),
        network=network,
        optimizer=torch.optim.Adam(network.parameters(), 1e-3),
        loss_function=nn.Identity(),  # unused: the method computes the loss
        iteration_update=iteration,
    )
    iteration.attach(trainer)
    before = [p.detach().clone() for p in network.parameters()]
    trainer.run()
    first = trainer.state.output[0]  # decollated on MODEL_COMPLETED, as MONAI's own step is
    assert trainer.state.iteration == 4 and torch.isfinite(torch.as_tensor(first["loss"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, network.parameters())), "the optimiser stepped"
    assert len(iteration.history) == 2
    if method == "ima":
        bank = iteration.method.ima.bank
        assert int(bank.epochs) == 2
        assert [h["visited_fraction"] for h in iteration.history] == [1.0, 1.0], "every sample, every epoch"
        assert not torch.allclose(bank.margins, torch.full_like(bank.margins, 0.1)), "the margins moved"
        assert "robust_margin_mean" in trainer.state.metrics
        assert "ima.bank.margins" in iteration.method.state_dict(), "margins travel with a checkpoint"


def test_ima_needs_the_sample_ids():
    with pytest.raises(ValueError, match="`sample_ids` must list every training sample for ima"):
        RobustIteration(_small_unet(), "ima", num_classes=2)


def test_batches_without_ids_or_with_unknown_ids_are_named():
    iteration = RobustIteration(_small_unet(), "ima", num_classes=2, sample_ids=["a", "b"])
    with pytest.raises(KeyError, match="no 'sample_id' key"):
        iteration._index({"image": None}, 2)
    with pytest.raises(KeyError, match=r"\['c'\] were not in `sample_ids`"):
        iteration._index({"sample_id": ["a", "c"]}, 2)


def _evaluate(inferer, prepare_batch=prepare_batch_with_label) -> float:
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(_data()), batch_size=4),
        network=_perfect_network(),
        inferer=inferer,
        prepare_batch=prepare_batch,
        postprocessing=Compose(
            [AsDiscreted(keys="pred", argmax=True, to_onehot=2), AsDiscreted(keys="label", to_onehot=2)]
        ),
        key_val_metric={"dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))},
    )
    evaluator.run()
    return float(evaluator.state.metrics["dice"])


def test_supervised_evaluator_reports_dice_under_attack_through_its_own_metric_handler():
    from monai.engines.utils import default_prepare_batch
    from monai.inferers import SimpleInferer

    clean = _evaluate(SimpleInferer(), default_prepare_batch)
    attacked = _evaluate(AdversarialInferer("pgd-l2", 2.0, settings=AttackSettings(steps=10)))
    assert clean == pytest.approx(1.0)
    assert attacked < 0.9, "an L2 budget of 2 flips up to 16 voxels of 64 (0.5 each)"
    assert _evaluate(AdversarialInferer("pgd-l2", 0.0, settings=AttackSettings(steps=1))) == pytest.approx(1.0)


def test_adversarial_inferer_without_labels_attacks_the_clean_prediction():
    from monai.inferers import SlidingWindowInferer

    inferer = AdversarialInferer("pgd-l2", 2.0, settings=AttackSettings(steps=10), inferer=SlidingWindowInferer((4, 4)))
    images = torch.stack([d["image"] for d in _data(4)])
    logits = inferer(images, _perfect_network())
    assert logits.shape == (4, 2, 8, 8)
    assert (logits.argmax(1) != images[:, 0].long()).any(), "the attack moved some voxel through the window blend"


def test_robust_dice_metric_accumulates_and_falls_with_the_budget():
    data = _data()
    images, labels = torch.stack([d["image"] for d in data]), torch.stack([d["label"] for d in data])
    values = []
    for eps in (0.0, 1.0, 3.0):
        metric = RobustDiceMetric(_perfect_network(), 2, attack="pgd-l2", eps=eps, settings=AttackSettings(steps=10))
        metric(images[:4], labels[:4])
        metric(images[4:], labels[4:])
        assert metric.get_buffer().shape == (8, 1, 3)
        values.append(float(metric.aggregate()))
    assert values[0] == pytest.approx(1.0) and values[0] > values[1] > values[2]


def test_robust_dice_metric_checks_its_call():
    metric = RobustDiceMetric(_perfect_network(), 2, attack="noise-l2", eps=0.1)
    with pytest.raises(ValueError, match="has seen no data"):
        metric.aggregate()
    with pytest.raises(TypeError, match=r"RobustDiceMetric\(images, labels\)"):
        metric([torch.zeros(1, 8, 8)], [torch.zeros(1, 8, 8)])
    with pytest.raises(ValueError, match="`num_classes` must be >= 2"):
        RobustDiceMetric(_perfect_network(), 1)
