"""Registries fill themselves: importing every module of a package lets each register what it defines.

This is what makes adding a training method, an attack kind or an attack loss one new file: the
registry calls :func:`import_submodules` on first use, and the new module's decorator does the rest.
"""

from __future__ import annotations

import importlib
import pkgutil

__all__ = ["import_submodules"]

_imported: set[str] = set()


def import_submodules(package: str) -> None:
    """Import every direct submodule of ``package`` (once per process).

    >>> import_submodules("imaseg.attacks.losses")
    >>> from imaseg.attacks.losses import ATTACK_LOSSES
    >>> "cospgd" in ATTACK_LOSSES
    True
    """
    if package in _imported:
        return
    _imported.add(package)
    module = importlib.import_module(package)
    for info in pkgutil.iter_modules(module.__path__):
        importlib.import_module(f"{package}.{info.name}")
