"""A MONAI bundle's ``network_def`` built as data: no expressions, and only networks on an allowlist.

A bundle's ``configs/inference.json`` is a program as much as a config: MONAI's ``ConfigParser`` evaluates
``"$..."`` strings as Python and instantiates any importable ``"_target_"`` (``"builtins.open"``,
``"os.system"``). ``imaseg evaluate --model BUNDLE`` needs one thing from it, the network, so by default it
reads the file with ``json`` / ``yaml.safe_load`` and builds ``network_def`` here: plain values, ``@id``
references to other plain items of the file, and ``_target_`` only among :data:`ALLOWED_NETWORKS` (MONAI's
segmentation networks, by any of their MONAI names) and ``imaseg.networks.build_network`` with a
registered network name. Anything else is refused, naming the key and the trust flag
(``--trust-bundle-code``) that hands the file to MONAI's parser instead, for bundles one trusts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from monai.networks import nets
from torch import nn

from imaseg.data.errors import DataError
from imaseg.networks import build_network, require_trusted_factory

__all__ = ["ALLOWED_NETWORKS", "TRUST_FLAG", "build_network_def", "read_bundle_config"]

TRUST_FLAG = "--trust-bundle-code"
ALLOWED_NETWORKS = (
    "UNet",
    "BasicUNet",
    "BasicUNetPlusPlus",
    "SegResNet",
    "SegResNetDS",
    "SegResNetVAE",
    "DynUNet",
    "AttentionUnet",
    "UNETR",
    "SwinUNETR",
    "VNet",
    "HighResNet",
    "FlexibleUNet",
)
IMASEG_BUILDER = "imaseg.networks.build_network"
_SPECIAL = {"_target_", "_disabled_", "_desc_", "_mode_", "_requires_"}
_MAX_DEPTH = 32


def read_bundle_config(path: str | os.PathLike[str]) -> dict:
    """A bundle config file as plain data (JSON, or YAML through ``safe_load``); nothing is evaluated.

    Raises:
        DataError: unreadable, not JSON / YAML, or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        raise DataError(f"{path}: cannot read the bundle config ({error}); re-export the bundle", [path]) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a bundle config must hold a mapping, got {type(data).__name__}", [path])
    return data


def _disabled(value: Any) -> bool:
    return isinstance(value, dict) and value.get("_disabled_") in (True, "true", "True")


def _allowed(target: object, where: str, config: Path) -> Callable[..., Any]:
    if target == IMASEG_BUILDER:
        return build_network
    name = str(target)
    if name.startswith("monai.networks.nets."):
        name = name.rsplit(".", 1)[-1]
    found = getattr(nets, name, None) if "." not in name else None
    allowed = {getattr(nets, n) for n in ALLOWED_NETWORKS if hasattr(nets, n)}
    if isinstance(found, type) and found in allowed:
        return found
    raise DataError(
        f"{config}: {where} has _target_ {target!r}, which imaseg does not build from a bundle it does not trust "
        f"(allowed: MONAI's {', '.join(ALLOWED_NETWORKS)} and {IMASEG_BUILDER}); if you trust this bundle's code, "
        f"pass {TRUST_FLAG} to run its config through MONAI's parser",
        [config],
    )


class _Builder:
    """Builds one item of a bundle config, resolving ``@id`` references to other items (each built once)."""

    def __init__(self, config: dict, source: Path) -> None:
        self.config, self.source = config, source
        self.built: dict[str, Any] = {}
        self.building: set[str] = set()

    def refuse(self, where: str, what: str) -> DataError:
        return DataError(
            f"{self.source}: {where} holds {what}, which is code imaseg does not run from a bundle it does not trust; "
            f"if you trust this bundle's code, pass {TRUST_FLAG} to run its config through MONAI's parser",
            [self.source],
        )

    def item(self, key: str) -> Any:
        if key in self.built:
            return self.built[key]
        if key in self.building:
            raise DataError(f"{self.source}: the reference @{key} refers to itself", [self.source])
        value: Any = self.config
        for part in key.replace("#", "::").split("::"):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise DataError(f"{self.source}: the reference @{key} names no item of the config", [self.source])
        self.building.add(key)
        self.built[key] = self.value(value, key, 0)
        self.building.discard(key)
        return self.built[key]

    def value(self, value: Any, where: str, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise DataError(f"{self.source}: {where} nests deeper than {_MAX_DEPTH} levels", [self.source])
        if isinstance(value, str):
            if value.startswith("$"):
                raise self.refuse(where, f"the expression {value[:60]!r}")
            if value.startswith("%"):
                raise self.refuse(where, f"the macro {value[:60]!r}")
            return self.item(value[1:]) if value.startswith("@") else value
        if isinstance(value, list):
            kept = [v for v in value if not _disabled(v)]
            return [self.value(v, f"{where}::{i}", depth + 1) for i, v in enumerate(kept)]
        if isinstance(value, dict):
            return self.component(value, where, depth)
        return value

    def component(self, value: dict, where: str, depth: int) -> Any:
        if value.get("_requires_") is not None:
            raise self.refuse(where, "_requires_")
        if value.get("_mode_", "default") != "default":
            raise self.refuse(where, f"_mode_ {value['_mode_']!r}")
        arguments = {
            k: self.value(v, f"{where}::{k}", depth + 1)
            for k, v in value.items()
            if k not in _SPECIAL and not _disabled(v)
        }
        if "_target_" not in value:
            return arguments
        factory = _allowed(value["_target_"], where, self.source)
        if value["_target_"] == IMASEG_BUILDER:
            also = f", or pass {TRUST_FLAG} to run the bundle's config through MONAI's parser"
            require_trusted_factory(str(arguments.get("name", "")), self.source, received="a bundle", also=also)
        try:
            return factory(**arguments)
        except (TypeError, ValueError) as error:
            raise DataError(
                f"{self.source}: cannot build {where} ({error}); check its arguments", [self.source]
            ) from None


def build_network_def(config: dict, source: str | os.PathLike[str]) -> nn.Module:
    """The ``network_def`` of a bundle config read by :func:`read_bundle_config`, built without running code.

    Raises:
        DataError: an expression, a macro, ``_requires_``, a ``_mode_`` other than default, a ``_target_`` off
            the allowlist, a dangling reference, or a network that cannot be built; each names the file and
            the trust flag.
    """
    network = _Builder(config, Path(source)).item("network_def")
    if not isinstance(network, nn.Module):
        raise DataError(f"{source}: network_def is not a network ({type(network).__name__})", [source])
    return network
