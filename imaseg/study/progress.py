"""How far a study has got: per configuration the cells done, stale and left, and the CPU time left.

``imaseg study status`` prints it before a chunk is planned. A cell counts as done when the records hold
it with the fingerprint of today's settings, as stale when they hold it with another fingerprint (the
next ``imaseg study run`` reruns it), and as left otherwise. The time left is each configuration's mean
``cpu_minutes`` over its done cells (the mean over every done cell for a configuration with none yet).
No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from imaseg.study.cells import StudyCell, cell_fingerprints
from imaseg.study.declaration import Study
from imaseg.study.records import StudyRecords

__all__ = ["ConfigurationProgress", "format_progress", "study_progress"]


@dataclass(frozen=True)
class ConfigurationProgress:
    """One configuration's cells: ``done`` + ``stale`` + ``left`` of ``total``, and the CPU minutes left."""

    name: str
    total: int
    done: int
    stale: int
    cpu_minutes_per_cell: float | None  # mean over its done cells; None when no cell of the study is done
    measured: bool  # False when the per-cell minutes are the mean over the other configurations' cells

    @property
    def left(self) -> int:
        return self.total - self.done - self.stale

    @property
    def cpu_minutes_left(self) -> float | None:
        todo = self.left + self.stale
        if todo == 0:
            return 0.0
        return None if self.cpu_minutes_per_cell is None else todo * self.cpu_minutes_per_cell


def study_progress(study: Study, records: StudyRecords, cells: Sequence[StudyCell]) -> list[ConfigurationProgress]:
    """Progress of ``cells`` (as :func:`~imaseg.study.cells.expand_cells` gives them) against ``records``,
    one entry per configuration in the order the cells first name it."""
    fingerprints = cell_fingerprints(study, cells)
    names = list(dict.fromkeys(c.name for c in cells))
    done = {c.key for c in cells if records.is_done(c.key, fingerprints[c.key])}
    stale = {c.key for c in cells if c.key in records.cells and c.key not in done}
    minutes = {
        n: [float(records.cells[c.key]["cpu_minutes"]) for c in cells if c.name == n and c.key in done] for n in names
    }
    every = [m for values in minutes.values() for m in values]
    overall = sum(every) / len(every) if every else None
    progress = []
    for name in names:
        keys = [c.key for c in cells if c.name == name]
        own = minutes[name]
        progress.append(
            ConfigurationProgress(
                name=name,
                total=len(keys),
                done=sum(k in done for k in keys),
                stale=sum(k in stale for k in keys),
                cpu_minutes_per_cell=sum(own) / len(own) if own else overall,
                measured=bool(own),
            )
        )
    return progress


def format_progress(progress: Sequence[ConfigurationProgress]) -> str:
    """A plain-text table with a total line, e.g. for ``imaseg study status``.

    >>> row = ConfigurationProgress("std", total=4, done=1, stale=1, cpu_minutes_per_cell=2.0, measured=True)
    >>> print(format_progress([row]))
    configuration  done  stale  left  CPU min/cell  CPU min left
    std             1/4      1     2           2.0           6.0
    all             1/4      1     2                         6.0
    """
    width = max([len("configuration"), *(len(p.name) for p in progress)])
    lines = [f"{'configuration':<{width}}  done  stale  left  CPU min/cell  CPU min left"]
    for p in progress:
        per_cell = (
            "?" if p.cpu_minutes_per_cell is None else f"{p.cpu_minutes_per_cell:.1f}" + ("" if p.measured else "*")
        )
        minutes = "?" if p.cpu_minutes_left is None else f"{p.cpu_minutes_left:.1f}"
        lines.append(
            f"{p.name:<{width}}  {f'{p.done}/{p.total}':>4}  {p.stale:>5}  {p.left:>4}  {per_cell:>12}  {minutes:>12}"
        )
    remaining = [p.cpu_minutes_left for p in progress]
    total_left = "?" if any(m is None for m in remaining) else f"{sum(m for m in remaining if m is not None):.1f}"
    done, total = sum(p.done for p in progress), sum(p.total for p in progress)
    stale, left = sum(p.stale for p in progress), sum(p.left for p in progress)
    lines.append(f"{'all':<{width}}  {f'{done}/{total}':>4}  {stale:>5}  {left:>4}  {'':>12}  {total_left:>12}")
    if any(not p.measured and p.cpu_minutes_per_cell is not None for p in progress):
        lines.append("* no cell of this configuration done yet: the mean over the done cells of the others")
    return "\n".join(lines)
