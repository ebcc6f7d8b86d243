"""Models imaseg did not train: a TorchScript file or a MONAI bundle folder, loaded as an ``nn.Module``.

``imaseg evaluate --model PATH --data DIR`` scores such a model with the same attacks, CSV, JSON and
report as an imaseg run. A bundle's ``configs/inference.json`` (or ``.yaml``) must define ``network_def``,
and ``models/model.pt`` holds the weights (a state dict, or ``{"model": state dict}``, loaded with
``weights_only=True``); a bundle without ``network_def`` may ship ``models/model.ts`` (TorchScript) instead.

A bundle from elsewhere is data: ``network_def`` is built without running the config's code
(:mod:`imaseg.bundle_network`: no ``$`` expressions, MONAI's segmentation networks and imaseg's builder
only). A bundle one trusts can be run through MONAI's own ``ConfigParser`` instead
(``--trust-bundle-code``, :func:`trust_bundle_code`), which evaluates its expressions and instantiates any
``_target_``.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path

import torch
from torch import nn

from imaseg.bundle_network import build_network_def, read_bundle_config
from imaseg.data.errors import DataError

__all__ = ["BUNDLE_CONFIGS", "foreign_weights_file", "load_foreign_model", "trust_bundle_code"]

BUNDLE_CONFIGS = ("configs/inference.json", "configs/inference.yaml")
_TRUSTED_BUNDLES: set[Path] = set()


def trust_bundle_code(path: str | os.PathLike[str]) -> None:
    """Let the bundle folder ``path`` be loaded through MONAI's ``ConfigParser`` in this process, running the
    code its config holds (what ``--trust-bundle-code`` does)."""
    _TRUSTED_BUNDLES.add(Path(path).resolve())


def _bundle_config(folder: Path) -> Path | None:
    return next((folder / name for name in BUNDLE_CONFIGS if (folder / name).is_file()), None)


def foreign_weights_file(path: str | os.PathLike[str]) -> Path:
    """The file that identifies the model's weights (for fingerprints): the TorchScript file, or the bundle's
    ``models/model.pt`` (else ``models/model.ts``)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model file or bundle folder", [path])
    if path.is_file():
        return path
    for name in ("models/model.pt", "models/model.ts"):
        if (path / name).is_file():
            return path / name
    raise DataError(f"{path}: a MONAI bundle needs models/model.pt (or models/model.ts)", [path])


def load_foreign_model(
    path: str | os.PathLike[str], device: torch.device | str = "cpu", *, trust_code: bool = False
) -> nn.Module:
    """A TorchScript file or a MONAI bundle folder as a module in eval mode on ``device``.

    Args:
        path: the TorchScript file or bundle folder.
        device: where the module goes.
        trust_code: build the bundle's ``network_def`` with MONAI's ``ConfigParser``, running its expressions
            and any ``_target_`` (also on for bundles passed to :func:`trust_bundle_code`); otherwise it is
            built as data (:func:`imaseg.bundle_network.build_network_def`).

    Raises:
        DataError: missing files, a bundle without ``network_def`` or TorchScript, code in an untrusted
            bundle's config, weights that do not fit.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model file or bundle folder", [path])
    if path.is_file():
        return _torchscript(path, device)
    config = _bundle_config(path)
    if config is None:
        raise DataError(f"{path}: not a MONAI bundle (no {' or '.join(BUNDLE_CONFIGS)})", [path])
    content = read_bundle_config(config)
    if "network_def" not in content:
        weights = foreign_weights_file(path)
        if weights.suffix == ".ts":
            return _torchscript(weights, device)
        raise DataError(f"{config}: defines no network_def and the bundle ships no models/model.ts", [config])
    if trust_code or path.resolve() in _TRUSTED_BUNDLES:
        network = _parsed_by_monai(path, config)
    else:
        network = build_network_def(content, config)
    weights = foreign_weights_file(path)
    state = _bundle_weights(weights)
    try:
        network.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, ValueError) as error:
        raise DataError(f"{weights}: the weights do not fit {config}'s network_def ({error})", [weights]) from None
    return network.to(device).eval()


def _bundle_weights(weights: Path) -> dict:
    """A bundle's ``models/model.pt`` as a state dict, loaded with ``weights_only=True``."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"{weights}: refusing to load: the weights carry objects other than tensors and plain containers, which "
            "can run code when loaded; re-save them as a plain state dict from a trusted copy",
            [weights],
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError, TypeError, struct.error) as error:
        raise DataError(
            f"{weights}: not readable PyTorch weights (truncated, corrupt, or another kind of file; "
            f"{type(error).__name__}); re-export the bundle",
            [weights],
        ) from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise DataError(f"{weights}: holds a {type(state).__name__}, not a state dict of tensors", [weights])
    return state


def _parsed_by_monai(folder: Path, config: Path) -> nn.Module:
    """``network_def`` as MONAI builds it: expressions evaluated, any ``_target_`` instantiated (trusted only)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(folder)
    return parser.get_parsed_content("network_def")


def _torchscript(path: Path, device: torch.device | str) -> nn.Module:
    try:
        module = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as error:
        raise DataError(
            f"{path}: not a TorchScript model ({str(error).splitlines()[0]}); save it with torch.jit.save, or give a "
            "MONAI bundle folder",
            [path],
        ) from None
    return module.eval()
