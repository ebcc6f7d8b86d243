"""Load a trained run for evaluation: network + config + data, checked against each other."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from imaseg.cache.reader import CaseStore
from imaseg.checkpoint import load_checkpoint, load_weights
from imaseg.config import load_yaml
from imaseg.data.errors import DataError
from imaseg.networks import NetworkConfig

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun:
    """A trained network with what evaluation needs to know of its run (read from its files only)."""

    run_dir: Path
    network: nn.Module
    store: CaseStore
    checkpoint: Path
    epoch: int
    fold: int
    method: str
    clip_range: tuple[float, float] | None


def _checkpoint_path(run_dir: Path, which: str) -> Path:
    if which in ("last", "best"):
        path = run_dir / "checkpoints" / f"{which}.pt"
        if which == "best" and not path.is_file():
            path = run_dir / "checkpoints" / "last.pt"
        return path
    return Path(which)


def load_run(
    run_dir: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    checkpoint: str = "last",
    device: torch.device | str = "cpu",
) -> LoadedRun:
    """Rebuild the trained network of ``run_dir`` and open its data (or ``cache``).

    Raises:
        FileNotFoundError: no run config or checkpoint.
        DataError: the checkpoint does not fit the data (channels, classes, spatial dims).
    """
    run = Path(run_dir)
    settings = load_yaml(run / "config.yaml")
    train = settings.get("train", {})
    if not isinstance(train, dict):
        raise ValueError(f"{run / 'config.yaml'}: its 'train' section must be a mapping")
    store = CaseStore(cache or settings["cache"])
    path = _checkpoint_path(run, checkpoint)
    state = load_checkpoint(path, map_location="cpu")
    data = state.get("data", {})
    expected = {"in_channels": store.in_channels, "num_classes": store.num_classes, "spatial_dims": store.spatial_dims}
    mismatched = {k: (data[k], v) for k, v in expected.items() if k in data and int(data[k]) != v}
    if mismatched:
        details = ", ".join(f"{k}: checkpoint {a} vs data {b}" for k, (a, b) in mismatched.items())
        raise DataError(
            f"{path} does not match the data in {store.root} ({details}); evaluate with data preprocessed "
            "like the training cache (same channels, labels and 2D/3D mode)",
            [path, store.root],
        )
    network = NetworkConfig.from_mapping(train).build(store.spatial_dims, store.in_channels, store.num_classes)
    try:
        load_weights(network, state["network"], path)
    except ValueError as error:
        raise DataError(str(error), [path]) from None
    network.to(device).eval()
    clip = train.get("clip_range")
    return LoadedRun(
        run,
        network,
        store,
        path,
        int(state.get("epoch", 0)),
        fold=int(train.get("fold", 0)),
        method=str(train.get("method", "std")),
        clip_range=(float(clip[0]), float(clip[1])) if clip else None,
    )
