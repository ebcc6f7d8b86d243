"""Models imaseg did not train: a TorchScript file or a MONAI bundle folder, loaded as an ``nn.Module``.

``imaseg evaluate --model PATH --data DIR`` scores such a model with the same attacks, CSV, JSON and
report as an imaseg run. A bundle is read through MONAI's own ``ConfigParser``: its
``configs/inference.json`` (or ``.yaml``) must define ``network_def``, and ``models/model.pt`` holds the
weights (a state dict, or ``{"model": state dict}``); a bundle without ``network_def`` may ship
``models/model.ts`` (TorchScript) instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from imaseg.data.errors import DataError

__all__ = ["BUNDLE_CONFIGS", "foreign_weights_file", "load_foreign_model"]

BUNDLE_CONFIGS = ("configs/inference.json", "configs/inference.yaml")


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


def load_foreign_model(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> nn.Module:
    """A TorchScript file or a MONAI bundle folder as a module in eval mode on ``device``.

    Raises:
        DataError: missing files, a bundle without ``network_def`` or TorchScript, weights that do not fit.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model file or bundle folder", [path])
    if path.is_file():
        return _torchscript(path, device)
    config = _bundle_config(path)
    if config is None:
        raise DataError(f"{path}: not a MONAI bundle (no {' or '.join(BUNDLE_CONFIGS)})", [path])
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(path)
    if "network_def" not in (parser.get() or {}):
        weights = foreign_weights_file(path)
        if weights.suffix == ".ts":
            return _torchscript(weights, device)
        raise DataError(f"{config}: defines no network_def and the bundle ships no models/model.ts", [config])
    network = parser.get_parsed_content("network_def")
    weights = foreign_weights_file(path)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise DataError(f"{weights}: the weights do not fit {config}'s network_def ({error})", [weights]) from None
    return network.to(device).eval()


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
