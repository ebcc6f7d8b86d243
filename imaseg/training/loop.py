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
from imaseg.training.methods.registry import LossLogs
from imaseg.utils.seeding import make_generator

if TYPE_CHECKING:
    from imaseg.cache.reader import CaseStore
    from imaseg.training.data import TrainingData

__all__ = ["Session", "train_epoch"]


@dataclass
class Session:
    """Everything one training run holds while it trains."""

    config: TrainConfig
    device: torch.device
    context: DistributedContext
    store: CaseStore
    train_set: TrainingData
    val_set: TrainingData | None
    network: nn.Module  # the bare network (its weights are what checkpoints hold)
    model: nn.Module  # what training forwards: the network, compiled and / or wrapped by DDP
    attacked: nn.Module  # what the inner attacks forward: the network, compiled with --compile
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augment: BatchAugment | None
    scaler: torch.amp.GradScaler  # enabled for fp16 only


def _batches(session: Session, epoch: int) -> list[torch.Tensor]:
    config = session.config
    order = torch.randperm(len(session.train_set), generator=make_generator(config.seed, "order", epoch))
    order = shard(order, session.context)
    return [order[i : i + config.batch_size] for i in range(0, order.numel(), config.batch_size)]


def _step(session: Session, epoch: int, iteration: int, batch: tuple) -> tuple[float, LossLogs]:
    config, device, rank = session.config, session.device, session.context.rank
    images, labels, index = batch
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True).long()
    if session.augment is not None:
        images, labels = session.augment(
            images, labels, make_generator(config.seed, "augment", epoch, iteration, rank, device=device)
        )
    generator = make_generator(config.seed, "attack", epoch, iteration, rank, device=device)
    dtype = session.method.autocast
    with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        loss, logs = session.method.loss(session.model, session.attacked, images, labels[:, 0], index, generator)
    session.optimizer.zero_grad(set_to_none=True)
    session.scaler.scale(loss).backward()
    if config.grad_clip > 0:
        session.scaler.unscale_(session.optimizer)
        torch.nn.utils.clip_grad_norm_(session.network.parameters(), config.grad_clip)
    session.scaler.step(session.optimizer)
    session.scaler.update()
    return loss.item(), logs


def train_epoch(session: Session, epoch: int, *, progress: bool) -> dict:
    """Train one epoch; the row holds epoch, seconds, lr, mean losses and the method's end-of-epoch fields."""
    config = session.config
    epoch_start = time.perf_counter()
    session.network.train()
    order = _batches(session, epoch)
    totals: dict[str, float] = {}
    iterator = session.train_set.batches(order, epoch)
    if progress and session.context.is_main:
        from tqdm.auto import tqdm

        iterator = tqdm(
            iterator,
            total=len(order),
            desc=f"epoch {epoch + 1}/{config.epochs} {config.method}",
            unit="batch",
            leave=False,
        )
    for iteration, batch in enumerate(iterator):
        loss, logs = _step(session, epoch, iteration, batch)
        for key, value in {"loss": loss, **logs}.items():
            totals[key] = totals.get(key, 0.0) + float(value)  # a method's logs may be 0-dim tensors
        if hasattr(iterator, "set_postfix"):
            iterator.set_postfix(loss=f"{loss:.3f}")
    lr = session.optimizer.param_groups[0]["lr"]  # the rate this epoch trained with (before the scheduler steps)
    session.scheduler.step()
    method_fields = session.method.end_epoch()
    row = {"epoch": epoch + 1, "seconds": time.perf_counter() - epoch_start, "lr": lr}
    row.update({k: v / max(len(order), 1) for k, v in totals.items()})
    row.update(method_fields)
    return row
