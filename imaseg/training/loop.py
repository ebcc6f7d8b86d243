"""One training epoch: seeded data order, augmentation and attack starts, the method's loss, one optimiser
step per batch; returns the epoch's log row (mean losses, learning rate, the method's epoch fields)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from imaseg.training.augment import BatchAugment
from imaseg.training.config import TrainConfig
from imaseg.training.distributed import DistributedContext, shard
from imaseg.training.methods import Method
from imaseg.utils.seeding import make_generator

if TYPE_CHECKING:
    from imaseg.cache.reader import CaseStore, SampleSet

__all__ = ["Session", "train_epoch"]


@dataclass
class Session:
    """Everything one training run holds while it trains."""

    config: TrainConfig
    device: torch.device
    context: DistributedContext
    store: CaseStore
    train_set: SampleSet
    val_set: SampleSet | None
    network: nn.Module
    model: nn.Module  # the network, or its DDP wrapper
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augment: BatchAugment | None


def _batches(session: Session, epoch: int) -> list[torch.Tensor]:
    config = session.config
    order = torch.randperm(len(session.train_set), generator=make_generator(config.seed, "order", epoch))
    order = shard(order, session.context)
    return [order[i : i + config.batch_size] for i in range(0, order.numel(), config.batch_size)]


def _step(session: Session, epoch: int, iteration: int, index: torch.Tensor) -> tuple[float, dict[str, float]]:
    config, device, rank = session.config, session.device, session.context.rank
    images = session.train_set.images[index].to(device)
    labels = session.train_set.labels[index].to(device).long()
    if session.augment is not None:
        images, labels = session.augment(
            images, labels, make_generator(config.seed, "augment", epoch, iteration, rank, device=device)
        )
    generator = make_generator(config.seed, "attack", epoch, iteration, rank, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
        loss, logs = session.method.loss(session.model, session.network, images, labels[:, 0], index, generator)
    session.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(session.network.parameters(), config.grad_clip)
    session.optimizer.step()
    return loss.item(), logs


def train_epoch(session: Session, epoch: int, *, progress: bool) -> dict:
    """Train one epoch; the row holds epoch, seconds, lr, mean losses and the method's end-of-epoch fields."""
    config = session.config
    epoch_start = time.perf_counter()
    session.network.train()
    batches = _batches(session, epoch)
    totals: dict[str, float] = {}
    iterator = batches
    if progress and session.context.is_main:
        from tqdm.auto import tqdm

        iterator = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs} {config.method}", unit="batch", leave=False)
    for iteration, index in enumerate(iterator):
        loss, logs = _step(session, epoch, iteration, index)
        for key, value in {"loss": loss, **logs}.items():
            totals[key] = totals.get(key, 0.0) + value
        if hasattr(iterator, "set_postfix"):
            iterator.set_postfix(loss=f"{loss:.3f}")
    lr = session.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with (before the scheduler steps)
    session.scheduler.step()
    method_fields = session.method.end_epoch()
    row = {"epoch": epoch + 1, "seconds": time.perf_counter() - epoch_start, "lr": lr}
    row.update({k: v / max(len(batches), 1) for k, v in totals.items()})
    row.update(method_fields)
    return row
