"""Shared by the benchmark scripts: a callable wrapper that adds up the wall time spent inside it."""

from __future__ import annotations

import time

__all__ = ["Timed"]


class Timed:
    """Calls ``function`` and accumulates its wall time in ``seconds``; ``function`` is the original."""

    def __init__(self, function) -> None:
        self.function, self.seconds = function, 0.0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB since it started (Linux: ``VmHWM``, which an ``exec``
    resets; ``ru_maxrss`` keeps the parent's peak across ``exec``, so a child started from a large parent
    would report the parent's peak)."""
    import resource
    from pathlib import Path

    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
