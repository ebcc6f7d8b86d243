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
import os
import time
from pathlib import Path

import torch
from torch import nn

from imaseg.attacks import SlidingWindowForward
from imaseg.cache.reader import CaseStore
from imaseg.cache.run_record import preprocessing_record
from imaseg.checkpoint import load_checkpoint, load_weights, rng_state, save_checkpoint, set_rng_state
from imaseg.config import to_dict
from imaseg.networks import resolve_device
from imaseg.run import RunDir
from imaseg.training.config import TrainConfig
from imaseg.training.data import TrainingData
from imaseg.training.distributed import DistributedContext, barrier, init_distributed
from imaseg.training.loop import Session, train_epoch
from imaseg.training.methods import build_method, describe_method
from imaseg.training.optim import build_augment, build_optimizer, lr_factor
from imaseg.training.run_log import EpochLog
from imaseg.training.validation import validate
from imaseg.utils.paths import refuse_output_in_input
from imaseg.utils.seeding import seed_everything

__all__ = ["build_model_from_config", "train"]

logger = logging.getLogger(__name__)


def build_model_from_config(config: TrainConfig, spatial_dims: int, in_channels: int, num_classes: int) -> nn.Module:
    """The network a training config describes (see :class:`~imaseg.networks.NetworkConfig`)."""
    return config.network.build(spatial_dims, in_channels, num_classes)


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
        FileExistsError: ``run_dir`` holds a checkpoint and neither ``resume`` nor ``overwrite`` is set, or
            another live process trains in it (:class:`~imaseg.utils.lock.FolderInUseError`).
        ValueError: ``run_dir`` is the cache folder or inside it.

    Returns:
        A summary: epochs done, last validation metrics, margin statistics, run folder.
    """
    refuse_output_in_input(run_dir, {"--cache": cache_dir}, output_flag="--out")
    with RunDir(run_dir).training_lock(enabled=os.environ.get("RANK", "0") == "0"):  # one trainer per folder
        return _train(cache_dir, Path(run_dir), config, resume, stop_after, progress, overwrite)


def _train(cache_dir, run: Path, config: TrainConfig, resume, stop_after, progress, overwrite) -> dict:
    session = _start_session(cache_dir, config)
    start_epoch, best = _restore(session, run, resume=resume, overwrite=overwrite)
    log = _open_run_folder(session, run, cache_dir, start_epoch)
    session.method.resume(run, start_epoch)
    started = time.perf_counter()
    epochs_run, row = 0, {}
    for epoch in range(start_epoch, config.epochs):
        if stop_after is not None and epochs_run >= stop_after:
            break
        row = train_epoch(session, epoch, progress=progress)
        row.update(_validation(session, epoch))
        epochs_run += 1
        best = _finish_epoch(session, run, log, row, epoch, best)
        if config.time_budget > 0 and _over_budget(started, config.time_budget, session.context):
            logger.info("time budget of %.1f min reached after epoch %d", config.time_budget, epoch + 1)
            break
    if log is not None:
        log.close()
    return {
        "run": str(run),
        "epochs_run": epochs_run,
        "epoch": start_epoch + epochs_run,
        "last": row,
        "margins": session.method.statistics(),
    }


def _start_session(cache_dir, config: TrainConfig) -> Session:
    """Device, seeds, data, network, method, optimiser: in this order, so a seeded run is reproducible."""
    device = resolve_device(config.device)
    context = init_distributed(device)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    seed_everything(config.seed, deterministic=config.deterministic)
    store = CaseStore(cache_dir)
    train_set = TrainingData(store, config, "train")
    val_set = TrainingData(store, config, "val") if store.case_ids("val", config.fold) else None
    network = build_model_from_config(config, store.spatial_dims, store.in_channels, store.num_classes).to(device)
    method = build_method(config, network, train_set.ids, store.num_classes).to(device)
    if context.enabled and method.adversarial and not method.joint_forward:
        raise ValueError("distributed adversarial training needs a network without batch norm (use instance norm)")
    attacked: nn.Module = torch.compile(network) if config.compile else network  # type: ignore[assignment]
    model: nn.Module = attacked
    if context.enabled:
        model = nn.parallel.DistributedDataParallel(
            attacked, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = build_optimizer(config, network)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(config, e))
    return Session(
        config,
        device,
        context,
        store,
        train_set,
        val_set,
        network,
        model,
        attacked,
        method,
        optimizer,
        scheduler,
        build_augment(config),
        torch.amp.GradScaler(device.type, enabled=config.amp and config.amp_dtype == "fp16"),
    )


def _restore(session: Session, run: Path, *, resume: bool, overwrite: bool) -> tuple[int, float]:
    """Refuse, clear, resume or initialise; returns the first epoch to train and the best score so far."""
    checkpoint_path = RunDir(run).last_checkpoint
    context = session.context
    if checkpoint_path.is_file() and not resume:
        if not overwrite:
            raise FileExistsError(
                f"{run} already holds a trained run ({checkpoint_path}); pass --resume to continue it or "
                "--overwrite to start over"
            )
        if context.is_main:
            RunDir(run).clear_training(session.method.run_files)
        barrier(context)
    if resume and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path, map_location=session.device)
        load_weights(session.network, state["network"], checkpoint_path)
        session.optimizer.load_state_dict(state["optimizer"])
        session.scheduler.load_state_dict(state["scheduler"])
        session.method.load_state_dict(state["method"])
        if state.get("scaler"):
            session.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        logger.info("resuming %s from epoch %d", run, int(state["epoch"]))
        return int(state["epoch"]), float(state.get("best", -1.0))
    if session.config.init:
        state = load_checkpoint(session.config.init, map_location=session.device)
        if not session.config.allow_foreign_init:
            _refuse_foreign_init(session, state)
        load_weights(session.network, state["network"], session.config.init)
        logger.info("initialised weights from %s", session.config.init)
    return 0, -1.0


def _refuse_foreign_init(session: Session, state: dict) -> None:
    """A checkpoint trained on another cache or fold may have seen this run's test cases."""
    source_cache, source_fold = state.get("cache"), (state.get("config") or {}).get("fold")
    here = str(Path(session.store.root).resolve())
    problems = []
    if source_cache is not None and source_cache != here:
        problems.append(f"cache {source_cache} (this run: {here})")
    if source_fold is not None and int(source_fold) != session.config.fold:
        problems.append(f"fold {source_fold} (this run: {session.config.fold})")
    if problems:
        raise ValueError(
            f"--init {session.config.init} was trained on {' and '.join(problems)}: its training cases may be this "
            "run's test cases; initialise from a run of the same cache and fold, or set --allow-foreign-init"
        )


def _open_run_folder(session: Session, run: Path, cache_dir, start_epoch: int) -> EpochLog | None:
    """The main rank writes config.yaml (with the method's description), split.json and the log."""
    config, store, context = session.config, session.store, session.context
    if not context.is_main:
        return None
    log = EpochLog(run, tensorboard=config.tensorboard)
    run.mkdir(parents=True, exist_ok=True)
    sections = {"cache": str(Path(cache_dir).resolve()), "train": config, "method": describe_method(config)}
    folder = RunDir(run)
    folder.write_config(sections)
    folder.write_preprocessing(preprocessing_record(store.manifest))  # the run needs no cache
    split = store.manifest.split(config.fold).to_json()
    folder.write_split({"fold": config.fold, **split, "train_samples": len(session.train_set)})
    log.truncate(start_epoch)
    return log


def _validation(session: Session, epoch: int) -> dict:
    config = session.config
    last = epoch + 1 == config.epochs
    if session.val_set is None or not session.context.is_main or not ((epoch + 1) % config.val_every == 0 or last):
        return {}
    store, val_set = session.store, session.val_set
    # whole validation volumes of a patch-trained network go through a sliding window of the patch size
    forward = SlidingWindowForward(session.network, config.patch_size) if config.patch_size else session.network
    batch = 1 if config.patch_size else config.batch_size  # native-resolution volumes differ in shape
    return validate(
        forward,
        ((images, labels) for images, labels, _ in val_set.batches(val_set.in_order(batch), epoch=0)),
        store.num_classes,
        device=session.device,
        eps=config.val_eps,
        steps=config.val_steps,
        clip_range=config.clip_range,
        seed=config.seed,
        class_names=_class_names(session),
    )


def _class_names(session: Session) -> dict[int, str]:
    return session.store.labels


def _finish_epoch(session: Session, run: Path, log: EpochLog | None, row: dict, epoch: int, best: float) -> float:
    """Method files, log row, best and last checkpoints (main rank); per-epoch resets (all ranks)."""
    if log is not None:
        session.method.write_epoch(run, epoch + 1, _class_names(session))
        log.append(row)
        score = row.get("val_dice", float("nan"))
        if score == score and score > best:
            best = score
            save_checkpoint(RunDir(run).best_checkpoint, _payload(session, epoch + 1, best))
        save_checkpoint(RunDir(run).last_checkpoint, _payload(session, epoch + 1, best))
        logger.info("epoch %d/%d %s", epoch + 1, session.config.epochs, _summary_line(row))
    session.method.reset_epoch()
    barrier(session.context)
    return best


def _over_budget(started: float, minutes: float, context: DistributedContext) -> bool:
    """Whether the time budget is spent; under DDP rank 0 decides for all, so no rank waits alone."""
    over = torch.tensor([int((time.perf_counter() - started) / 60 > minutes)])
    if context.enabled:
        torch.distributed.broadcast(over, src=0)
    return bool(over.item())


def _payload(session: Session, epoch: int, best: float) -> dict:
    store = session.store
    return {
        "data": store.manifest.checkpoint_data(),
        "network": session.network.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict(),
        "method": session.method.state_dict(),
        "scaler": session.scaler.state_dict(),
        "epoch": epoch,
        "best": best,
        "rng": rng_state(),
        "config": to_dict(session.config),
        "cache": str(Path(store.root).resolve()),
    }


def _summary_line(row: dict) -> str:
    keys = ("loss", "val_dice", "val_robust_dice", "margin_mean", "fail_fraction", "seconds")
    return " ".join(f"{k}={row[k]:.4g}" for k in keys if k in row and isinstance(row[k], float))
