"""The training loop: any method, resumable, seeded per (epoch, iteration), DDP-ready.

Run folder::

    RUN/config.yaml          resolved config: cache, fold, train settings
    RUN/split.json           the cases of each side of the split (from the cache manifest)
    RUN/log.csv, RUN/tb/     per-epoch losses, validation Dice (clean and under a cheap attack), margins
    RUN/margins.json         IMA: final per-sample margins and per-voxel flip statistics per epoch
    RUN/checkpoints/last.pt  weights, optimiser, scheduler, method state (IMA margins), epoch, RNG, config
    RUN/checkpoints/best.pt  best validation Dice so far (when there is a validation side)

Data order, augmentation and attack starts draw from generators seeded by (seed, purpose, epoch,
iteration, rank), so a run resumed from ``last.pt`` continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from pathlib import Path

import torch
from torch import nn

from imaseg.cache.reader import CaseStore
from imaseg.config import save_config, to_dict
from imaseg.networks import build_network
from imaseg.training.augment import BatchAugment
from imaseg.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from imaseg.training.config import TrainConfig
from imaseg.training.distributed import DistributedContext, barrier, init_distributed, shard
from imaseg.training.methods import build_method
from imaseg.training.run_log import EpochLog
from imaseg.training.validation import validate
from imaseg.utils.atomic import atomic_write_json
from imaseg.utils.seeding import make_generator, seed_everything

__all__ = ["build_model_from_config", "resolve_device", "train"]

logger = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model_from_config(config: TrainConfig, spatial_dims: int, in_channels: int, num_classes: int) -> nn.Module:
    """The network a config describes (also used by evaluation to rebuild a trained one)."""
    kwargs: dict = {}
    name = config.network.lower()
    if name in ("unet", "attentionunet"):
        kwargs["channels"] = tuple(config.channels)
    if name == "unet":
        kwargs.update(num_res_units=config.res_units, dropout=config.dropout)
    return build_network(config.network, spatial_dims, in_channels, num_classes, **kwargs)


def _lr_factor(config: TrainConfig, epoch: int) -> float:
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "constant":
        return 1.0
    progress = (epoch - config.warmup_epochs) / max(config.epochs - config.warmup_epochs, 1)
    if config.schedule == "poly":
        return (1 - progress) ** 0.9
    return 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(config: TrainConfig, network: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            network.parameters(), lr=config.lr, momentum=0.99, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def train(
    cache_dir: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Train on the cache's training side of ``config.fold`` and write the run folder.

    Args:
        cache_dir: a cache written by ``imaseg preprocess``.
        run_dir: the run folder (created).
        config: the settings.
        resume: continue from ``run_dir/checkpoints/last.pt`` if it exists.
        stop_after: run at most this many epochs in this call (then return; resume continues).
        progress: show progress bars.
        overwrite: start over in a run folder that already holds a checkpoint (otherwise refused).

    Raises:
        FileExistsError: ``run_dir`` holds a checkpoint and neither ``resume`` nor ``overwrite`` is set.

    Returns:
        A summary: epochs done, last validation metrics, margin statistics, run folder.
    """
    device = resolve_device(config.device)
    context = init_distributed(device)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, deterministic=config.deterministic)
    run = Path(run_dir)
    store = CaseStore(cache_dir)
    train_set = store.samples("train", config.fold)
    val_cases = store.case_ids("val", config.fold)
    val_set = store.samples("val", config.fold) if val_cases else None
    network = build_model_from_config(config, store.spatial_dims, store.in_channels, store.num_classes).to(device)
    method = build_method(config, network, train_set.ids, store.num_classes).to(device)
    if context.enabled and method.name in ("pgd-at", "trades", "ima") and not method.joint_forward:
        raise ValueError("distributed adversarial training needs a network without batch norm (use instance norm)")
    model: nn.Module = network
    if context.enabled:
        model = nn.parallel.DistributedDataParallel(
            network, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = _optimizer(config, network)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: _lr_factor(config, e))
    augment = (
        BatchAugment(
            rotate=config.aug_rotate,
            scale=config.aug_scale,
            flip=config.aug_flip,
            intensity=config.aug_intensity,
            noise=config.aug_noise,
        )
        if config.augment
        else None
    )

    checkpoint_path = run / "checkpoints" / "last.pt"
    start_epoch, best = 0, -1.0
    if checkpoint_path.is_file() and not resume:
        if not overwrite:
            raise FileExistsError(
                f"{run} already holds a trained run ({checkpoint_path}); pass --resume to continue it or "
                "--overwrite to start over"
            )
        if context.is_main:
            for stale_dir in ("checkpoints", "tb"):
                shutil.rmtree(run / stale_dir, ignore_errors=True)
            for stale in ("log.csv", "margins.json"):
                (run / stale).unlink(missing_ok=True)
        barrier(context)
    if resume and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path, map_location=device)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        method.load_state_dict(state["method"])
        set_rng_state(state["rng"])
        start_epoch, best = int(state["epoch"]), float(state.get("best", -1.0))
        logger.info("resuming %s from epoch %d", run, start_epoch)
    elif config.init:
        network.load_state_dict(load_checkpoint(config.init, map_location=device)["network"])
        logger.info("initialised weights from %s", config.init)

    log = EpochLog(run, tensorboard=config.tensorboard and context.is_main) if context.is_main else None
    if context.is_main:
        run.mkdir(parents=True, exist_ok=True)
        save_config(run / "config.yaml", {"cache": str(Path(cache_dir).resolve()), "train": config})
        split = store.manifest["splits"][str(config.fold)]
        atomic_write_json(run / "split.json", {"fold": config.fold, **split, "train_samples": len(train_set)})
        log.truncate(start_epoch)

    class_names = {int(k): v for k, v in store.manifest["labels"].items()}
    data_info = {
        "in_channels": store.in_channels,
        "num_classes": store.num_classes,
        "spatial_dims": store.spatial_dims,
        "labels": store.manifest["labels"],
    }
    started = time.perf_counter()
    epochs_run, row = 0, {}
    margin_history = _read_margin_history(run, start_epoch) if method.name == "ima" else []
    for epoch in range(start_epoch, config.epochs):
        if stop_after is not None and epochs_run >= stop_after:
            break
        epoch_start = time.perf_counter()
        network.train()
        order = torch.randperm(len(train_set), generator=make_generator(config.seed, "order", epoch))
        order = shard(order, context)
        batches = [order[i : i + config.batch_size] for i in range(0, order.numel(), config.batch_size)]
        totals: dict[str, float] = {}
        iterator = batches
        if progress and context.is_main:
            from tqdm.auto import tqdm

            iterator = tqdm(
                batches, desc=f"epoch {epoch + 1}/{config.epochs} {config.method}", unit="batch", leave=False
            )
        for iteration, index in enumerate(iterator):
            images = train_set.images[index].to(device)
            labels = train_set.labels[index].to(device).long()
            if augment is not None:
                images, labels = augment(
                    images,
                    labels,
                    make_generator(config.seed, "augment", epoch, iteration, context.rank, device=device),
                )
            generator = make_generator(config.seed, "attack", epoch, iteration, context.rank, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.amp):
                loss, logs = method.loss(model, network, images, labels[:, 0], index, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(network.parameters(), config.grad_clip)
            optimizer.step()
            for key, value in {"loss": loss.item(), **logs}.items():
                totals[key] = totals.get(key, 0.0) + value
            if progress and context.is_main and hasattr(iterator, "set_postfix"):
                iterator.set_postfix(loss=f"{loss.item():.3f}")
        lr = optimizer.param_groups[0]["lr"]  # the rate this epoch trained with (before the scheduler steps)
        scheduler.step()
        margin_stats = method.end_epoch()
        row = {"epoch": epoch + 1, "seconds": time.perf_counter() - epoch_start, "lr": lr}
        row.update({k: v / max(len(batches), 1) for k, v in totals.items()})
        row.update(margin_stats)
        if (
            val_set is not None
            and context.is_main
            and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs)
        ):
            row.update(
                validate(
                    network,
                    val_set,
                    store.num_classes,
                    batch_size=config.batch_size,
                    device=device,
                    eps=config.val_eps,
                    steps=config.val_steps,
                    clip_range=_clip_tuple(config),
                    seed=config.seed,
                    class_names=class_names,
                )
            )
        epochs_run += 1
        if context.is_main:
            if method.name == "ima":
                margin_history.append(_margin_record(method, epoch + 1, class_names))
                _write_margins(run, method, margin_history)
            log.append(row)
            score = row.get("val_dice", float("nan"))
            if score == score and score > best:
                best = score
                save_checkpoint(
                    run / "checkpoints" / "best.pt",
                    _payload(network, optimizer, scheduler, method, epoch + 1, best, config, data_info),
                )
            save_checkpoint(
                checkpoint_path, _payload(network, optimizer, scheduler, method, epoch + 1, best, config, data_info)
            )
            logger.info("epoch %d/%d %s", epoch + 1, config.epochs, _summary_line(row))
        if method.name == "ima":
            method.ima.voxel_stats.reset()
        barrier(context)
        if config.time_budget > 0 and _over_budget(started, config.time_budget, context):
            logger.info("time budget of %.1f min reached after epoch %d", config.time_budget, epoch + 1)
            break
    if log is not None:
        log.close()
    margins = method.ima.bank.statistics() if method.name == "ima" else {}
    return {
        "run": str(run),
        "epochs_run": epochs_run,
        "epoch": start_epoch + epochs_run,
        "last": row,
        "margins": margins,
    }


def _over_budget(started: float, minutes: float, context: DistributedContext) -> bool:
    """Whether the time budget is spent; under DDP rank 0 decides for all, so no rank waits alone."""
    over = torch.tensor([int((time.perf_counter() - started) / 60 > minutes)])
    if context.enabled:
        torch.distributed.broadcast(over, src=0)
    return bool(over.item())


def _clip_tuple(config: TrainConfig):
    return tuple(config.clip_range) if config.clip_range else None


def _payload(network, optimizer, scheduler, method, epoch, best, config, data) -> dict:
    return {
        "data": data,
        "network": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "method": method.state_dict(),
        "epoch": epoch,
        "best": best,
        "rng": rng_state(),
        "config": to_dict(config),
    }


def _margin_record(method, epoch: int, class_names: dict) -> dict:
    ima = method.ima
    record = {"epoch": epoch, **ima.bank.statistics(), "margins": ima.bank.margins.cpu().tolist()}
    if ima.margin == "voxel":
        record["voxels"] = ima.voxel_stats.summary(class_names)
    return record


def _read_margin_history(run: Path, start_epoch: int) -> list[dict]:
    import json

    path = run / "margins.json"
    if start_epoch == 0 or not path.is_file():
        return []
    return [e for e in json.loads(path.read_text())["epochs"] if e["epoch"] <= start_epoch]


def _write_margins(run: Path, method, history: list[dict]) -> None:
    previous = run / "margins.json"
    atomic_write_json(
        previous,
        {
            "sample_ids": method.ima.bank.sample_ids,
            "delta": method.ima.bank.delta,
            "eps_max": method.ima.bank.eps_max,
            "epochs": history,
        },
    )


def _summary_line(row: dict) -> str:
    keys = ("loss", "val_dice", "val_robust_dice", "margin_mean", "fail_fraction", "seconds")
    return " ".join(f"{k}={row[k]:.4g}" for k in keys if k in row and isinstance(row[k], float))
