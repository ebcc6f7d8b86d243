"""Logging set-up for the command line: readable lines on stderr, optionally also a log file."""

from __future__ import annotations

import logging
import os
import sys
import warnings

__all__ = ["setup_logging"]


def setup_logging(verbosity: int = 0, log_file: str | os.PathLike[str] | None = None) -> None:
    """INFO by default, DEBUG with ``verbosity >= 1``, WARNING with ``verbosity < 0``; quiet third parties."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    for noisy in ("matplotlib", "PIL", "nibabel", "monai", "torch", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    if verbosity <= 0:
        warnings.filterwarnings("ignore", category=FutureWarning, module="monai")
        warnings.filterwarnings("ignore", category=UserWarning, module="monai")
