"""An nnU-Net checkpoint's own training log as the rows of a run folder's ``log.csv``.

nnU-Net keeps its per-epoch log inside every checkpoint (``state["logging"]``: losses, pseudo Dice on its
validation patches, learning rates and the start and end time of each epoch). ``imaseg evaluate --nnunet``
writes it to the run folder's ``log.csv``, so the report shows how long and how far the model trained, as it
does for runs imaseg trained.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from imaseg.data.errors import DataError
from imaseg.run import RunDir

__all__ = ["nnunet_history", "write_nnunet_history"]

logger = logging.getLogger(__name__)

# log.csv column <- nnU-Net's logging key
_COLUMNS = {"loss": "train_losses", "val_loss": "val_losses", "val_pseudo_dice": "mean_fg_dice", "lr": "lrs"}


def nnunet_history(state: Mapping[str, Any]) -> list[dict[str, float | int]]:
    """One row per finished epoch of the checkpoint ``state``: ``epoch`` (from 1), ``seconds``, ``loss``,
    ``val_loss``, ``val_pseudo_dice`` (nnU-Net's pseudo Dice, mean over foreground classes, on its validation patches)
    and ``lr``; empty when the checkpoint holds no log.

    >>> log = {"epoch_start_timestamps": [0.0, 30.0], "epoch_end_timestamps": [29.5, 61.0],
    ...        "train_losses": [0.5, 0.2], "mean_fg_dice": [0.1, 0.4], "lrs": [0.01, 0.009]}
    >>> [(r["epoch"], r["seconds"], r["loss"], r["val_pseudo_dice"]) for r in nnunet_history({"logging": log})]
    [(1, 29.5, 0.5, 0.1), (2, 31.0, 0.2, 0.4)]
    """
    log = state.get("logging")
    if not isinstance(log, Mapping):
        return []
    starts, ends = _values(log, "epoch_start_timestamps"), _values(log, "epoch_end_timestamps")
    rows: list[dict[str, float | int]] = []
    for i in range(min(len(starts), len(ends))):  # an epoch whose end was never logged did not finish
        row: dict[str, float | int] = {"epoch": i + 1, "seconds": float(ends[i]) - float(starts[i])}
        for column, key in _COLUMNS.items():
            values = _values(log, key)
            if i < len(values):
                row[column] = float(values[i])
        rows.append(row)
    return rows


def _values(log: Mapping[str, Any], key: str) -> list[Any]:
    """``log[key]`` as a list (nnU-Net keeps lists; a NumPy array has no truth value to test)."""
    value = log.get(key)
    return [] if value is None else list(value)


def write_nnunet_history(run_dir: str | os.PathLike[str], checkpoint: str | os.PathLike[str]) -> int:
    """Write ``checkpoint``'s log to ``run_dir/log.csv`` (replacing any earlier one); returns the epochs written.

    Rewritten on every call, so the log is always the named checkpoint's (one read of the checkpoint, small
    beside an evaluation). The checkpoint is read with the safe loader (tensors, NumPy scalars, containers);
    one that needs more leaves the run without a log, with a warning (the report then says the model was
    trained outside imaseg's training command).
    """
    from imaseg.nnunet.model import load_checkpoint
    from imaseg.training.run_log import EpochLog

    run = RunDir(run_dir)
    run.log_path.unlink(missing_ok=True)  # never another checkpoint's log beside this one
    try:
        state = load_checkpoint(checkpoint, trust_code=False)
    except DataError as error:
        logger.warning("no training log in the report for %s: %s", checkpoint, error)
        return 0
    rows = nnunet_history(state)
    if rows:
        EpochLog(run.path, tensorboard=False).replace(rows)
    return len(rows)
