"""How much memory one decoded volume may take: a budget set by the machine, not by a file's header.

A 5 MB ``.nii.gz`` of zeros can hold 5 GB of voxels: the header's shape times its data type is what
decoding will take, and it is known before a byte of voxel data is read. Readers compare it with
:func:`memory_budget` (by default :data:`MEMORY_FRACTION` of the memory available now; ``--memory-budget
GIB`` on the commands that read images, or :func:`set_memory_budget`, set another) and refuse with the real
reason instead of running the machine out of memory.

>>> format_bytes(3 * 1024**3), format_bytes(512)
('3.0 GiB', '512 B')
>>> with memory_budget_limit(2 * 1024**2):
...     memory_budget()
(2097152, 'the memory budget set (--memory-budget)')
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = [
    "MEMORY_FRACTION",
    "available_memory",
    "format_bytes",
    "memory_budget",
    "memory_budget_limit",
    "set_memory_budget",
]

MEMORY_FRACTION = 0.5  # of the available memory, for one volume (its preprocessing needs more)
_override: int | None = None


def format_bytes(count: float) -> str:
    """``1536 -> '1.5 KiB'``: binary units, one decimal (bytes as an integer)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{int(count)} B" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover  (the loop always returns)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux ``MemAvailable``, else free pages), or
    ``None`` where the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def set_memory_budget(gib: float | None) -> None:
    """Set the budget of one decoded volume in GiB for this process (``None``: back to the default).

    Raises:
        ValueError: a budget that is not a positive number.
    """
    global _override
    if gib is not None and not (isinstance(gib, (int, float)) and gib > 0):
        raise ValueError(f"`memory_budget` must be a positive number of GiB, got {gib!r}")
    _override = None if gib is None else int(gib * 1024**3)


@contextlib.contextmanager
def memory_budget_limit(nbytes: int | None) -> Iterator[None]:
    """Within the block, the budget is ``nbytes`` (``None``: the default); restored afterwards."""
    global _override
    saved, _override = _override, nbytes
    try:
        yield
    finally:
        _override = saved


def memory_budget() -> tuple[int | None, str]:
    """The budget in bytes (``None``: unknown, no limit) and where it comes from, for messages."""
    if _override is not None:
        return _override, "the memory budget set (--memory-budget)"
    available = available_memory()
    if available is None:
        return None, "no memory budget (the system does not report its available memory)"
    share = f"{MEMORY_FRACTION:.0%}" if MEMORY_FRACTION != 0.5 else "half"
    return int(available * MEMORY_FRACTION), f"the memory budget ({share} of the {format_bytes(available)} available)"
