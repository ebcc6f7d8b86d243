"""nnU-Net v2 is optional: every module of :mod:`imaseg.nnunet` imports it through :func:`require_nnunet`.

``import imaseg`` (and ``import imaseg.nnunet``) never needs nnunetv2; using an nnU-Net model without it
raises :class:`NnUNetMissingError`, which names the install command. nnunetv2 is installed without its
dependencies because its network package (dynamic-network-architectures) requires timm, whose torchvision
pulls a CUDA torch over a CPU one; the ``nnunet`` extra lists the dependencies nnU-Net's inference and
training use (README, "nnU-Net").
"""

from __future__ import annotations

import importlib.util
from types import ModuleType

__all__ = ["INSTALL", "NNUNET_VERSION", "NnUNetMissingError", "nnunet_available", "require_nnunet"]

NNUNET_VERSION = "2.8.1"
INSTALL = 'pip install "imaseg[nnunet]" && pip install --no-deps nnunetv2==2.8.1 dynamic-network-architectures==0.4.4'


class NnUNetMissingError(ImportError, ValueError):
    """nnunetv2 (or one of the packages it imports) is not installed. A ``ValueError`` too, so the command line
    reports it as bad input (one line naming the install command), as for other missing optional packages."""


def nnunet_available() -> bool:
    """Whether nnunetv2 can be imported (without importing it)."""
    return importlib.util.find_spec("nnunetv2") is not None


def require_nnunet() -> ModuleType:
    """The ``nnunetv2`` package.

    Raises:
        NnUNetMissingError: it (or a package it imports) is missing, naming the install command.
    """
    try:
        import nnunetv2
        import nnunetv2.utilities.plans_handling.plans_handler  # noqa: F401  (pulls its own dependencies)
    except ImportError as error:
        raise NnUNetMissingError(
            f"scoring an nnU-Net v2 model needs nnunetv2 {NNUNET_VERSION}, which cannot be imported ({error}); "
            f"install it with: {INSTALL}  (README, 'nnU-Net')"
        ) from error
    return nnunetv2
