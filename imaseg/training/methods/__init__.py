"""Training methods, one module each (std, pgd-at, trades, ima), behind :class:`Method` and a registry."""

from imaseg.training.methods.adversarial import AdversarialMethod
from imaseg.training.methods.ima import IMAMethod
from imaseg.training.methods.pgd_at import PGDAT
from imaseg.training.methods.registry import (
    METHODS,
    LossLogs,
    Method,
    build_method,
    describe_method,
    has_batch_norm,
    method_class,
    method_names,
    register_method,
)
from imaseg.training.methods.std import Standard
from imaseg.training.methods.trades import Trades

__all__ = [
    "METHODS",
    "PGDAT",
    "AdversarialMethod",
    "IMAMethod",
    "LossLogs",
    "Method",
    "Standard",
    "Trades",
    "build_method",
    "describe_method",
    "has_batch_norm",
    "method_class",
    "method_names",
    "register_method",
]
