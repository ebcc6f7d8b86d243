"""imaseg: train medical image segmenters that survive adversarial noise, and prove it.

The main entry points, importable from the package (loaded on first use, so ``import imaseg`` stays light)::

    from imaseg import PGD, APGD, create_attack, IMALoss, train, evaluate, build_report
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "APGD": "imaseg.attacks",
    "PGD": "imaseg.attacks",
    "AttackSettings": "imaseg.attacks",
    "create_attack": "imaseg.attacks",
    "IMALoss": "imaseg.losses",
    "MarginBank": "imaseg.losses",
    "TrainConfig": "imaseg.training",
    "train": "imaseg.training",
    "EvalConfig": "imaseg.evaluation",
    "evaluate": "imaseg.evaluation",
    "build_report": "imaseg.report",
    "preprocess_dataset": "imaseg.cache",
    "PreprocessConfig": "imaseg.transforms",
    "check_dataset": "imaseg.data",
    "build_network": "imaseg.networks",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imaseg' has no attribute {name!r}")
