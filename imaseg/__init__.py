"""imaseg: train medical image segmenters that survive adversarial noise, and prove it.

The main entry points, importable from the package (loaded on first use, so ``import imaseg`` stays light)::

    from imaseg import PGD, APGD, create_attack, IMALoss, train, evaluate, predict, build_report

=====================  ==========================================================================
data                   ``check_dataset`` (integrity report), ``preprocess_dataset`` + ``PreprocessConfig``
attacks                ``PGD``, ``APGD``, ``create_attack(name, model, eps=, settings=AttackSettings(...))``
training               ``train`` + ``TrainConfig``; ``IMALoss`` and its ``MarginBank`` for your own loop
evaluation             ``evaluate`` + ``EvalConfig`` (Dice under attack per case and class);
                       ``score(model, data)`` for a module, TorchScript, bundle or run in one call
new images             ``predict`` + ``PredictConfig`` (label maps in source geometry, volumes)
MONAI engines          ``RobustIteration``, ``AdversarialInferer``, ``RobustDiceMetric`` (need ignite)
networks / report      ``build_network``; ``build_report`` (HTML + Markdown)
=====================  ==========================================================================
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: `python -m imaseg` imports this before it can drop the current folder
if TYPE_CHECKING:  # from sys.path, so only modules loaded at start-up are imported here (see __main__.py)
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
    "score": "imaseg.scoring",
    "build_report": "imaseg.report",
    "preprocess_dataset": "imaseg.cache",
    "PreprocessConfig": "imaseg.transforms",
    "check_dataset": "imaseg.data",
    "build_network": "imaseg.networks",
    "predict": "imaseg.prediction",
    "PredictConfig": "imaseg.prediction",
    "RobustIteration": "imaseg.monai",
    "AdversarialInferer": "imaseg.monai",
    "RobustDiceMetric": "imaseg.monai",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imaseg' has no attribute {name!r}")
