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
