"""Per-epoch logs of a run: a CSV rewritten atomically each epoch, and TensorBoard scalars."""

from __future__ import annotations

import csv
import io
import math
import os

from imaseg.run import RunDir
from imaseg.utils.atomic import atomic_write_text

__all__ = ["EpochLog"]


class EpochLog:
    """Rows keyed by epoch; columns are the union of keys seen, in first-seen order."""

    def __init__(self, run_dir: str | os.PathLike[str], *, tensorboard: bool = True) -> None:
        self.path = RunDir(run_dir).log_path
        self.rows: list[dict] = []
        if self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                self.rows = [dict(r) for r in csv.DictReader(handle)]
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(RunDir(run_dir).tensorboard_dir))
            except ImportError:  # tensorboard is a dependency, but do not fail a run over logging
                self.writer = None

    def truncate(self, last_epoch: int) -> None:
        """Drop rows after ``last_epoch`` (rows of an epoch whose checkpoint was never written)."""
        self.rows = [r for r in self.rows if int(r["epoch"]) <= last_epoch]

    def append(self, row: dict) -> None:
        self.rows = [r for r in self.rows if int(r["epoch"]) != int(row["epoch"])] + [row]
        self._write()
        if self.writer is not None:
            for key, value in row.items():
                if isinstance(value, (int, float)) and key != "epoch" and math.isfinite(value):
                    self.writer.add_scalar(key, value, int(row["epoch"]))
            self.writer.flush()

    def replace(self, rows: list[dict]) -> None:
        """Write ``rows`` as the whole log, at once (no TensorBoard scalars)."""
        self.rows = list(rows)
        self._write()

    def _write(self) -> None:
        columns: list[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: _fmt(v) for k, v in r.items()})
        atomic_write_text(self.path, buffer.getvalue())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value
