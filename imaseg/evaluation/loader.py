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
from imaseg.foreign import foreign_weights_file, load_foreign_model
from imaseg.networks import NetworkConfig

__all__ = ["LoadedRun", "checkpoint_path", "load_network", "load_run", "train_settings"]


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
    patch_size: list[int] | None = None  # trained on 3D patches: the default sliding window


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """``last`` / ``best`` (falling back to ``last`` without a validation side) or a path."""
    if which in ("last", "best"):
        path = run_dir / "checkpoints" / f"{which}.pt"
        if which == "best" and not path.is_file():
            path = run_dir / "checkpoints" / "last.pt"
        return path
    return Path(which)


def train_settings(run: Path) -> dict:
    """The ``train`` section of ``RUN/config.yaml``."""
    train = load_yaml(run / "config.yaml").get("train", {})
    if not isinstance(train, dict):
        raise ValueError(f"{run / 'config.yaml'}: its 'train' section must be a mapping")
    return train


def load_network(
    path: Path, train: dict, facts: dict, device: torch.device | str, *, data_root: object = None
) -> tuple[nn.Module, dict]:
    """The run's network rebuilt from its settings for data with ``facts`` (``in_channels``, ``num_classes``,
    ``spatial_dims``), with the weights of checkpoint ``path``, in eval mode on ``device``.

    Raises:
        DataError: the checkpoint was trained on data of another shape, or its weights do not fit.
    """
    state = load_checkpoint(path, map_location="cpu")
    data = state.get("data", {})
    mismatched = {k: (data[k], v) for k, v in facts.items() if k in data and int(data[k]) != int(v)}
    if mismatched:
        details = ", ".join(f"{k}: checkpoint {a} vs data {b}" for k, (a, b) in mismatched.items())
        raise DataError(
            f"{path} does not match the data in {data_root} ({details}); use data preprocessed like the "
            "training cache (same channels, labels and 2D/3D mode)",
            [path, Path(str(data_root))] if data_root is not None else [path],
        )
    network = NetworkConfig.from_mapping(train).build(
        int(facts["spatial_dims"]), int(facts["in_channels"]), int(facts["num_classes"])
    )
    try:
        load_weights(network, state["network"], path)
    except ValueError as error:
        raise DataError(str(error), [path]) from None
    network.to(device).eval()
    return network, state


def _check_output_channels(network: nn.Module, store: CaseStore, path: Path, device) -> None:
    """A foreign model must give one logit channel per class of the data: probe it on the first sample."""
    case = store.load_case(store.case_ids("all")[0])
    image = torch.from_numpy(case.image)
    axis = case.meta["slice_axis"]
    sample = image.select(axis + 1, 0)[None] if axis is not None else image[None]
    with torch.no_grad():
        out = network(sample.to(device))
    if not isinstance(out, torch.Tensor) or out.dim() != sample.dim() or out.shape[1] != store.num_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(
            f"{path}: the model returns {shape} for an input of {tuple(sample.shape)}; the data have "
            f"{store.num_classes} classes (background included), so it must return logits (B, {store.num_classes}, "
            "*spatial): check the model, or preprocess the data as it was trained",
            [path],
        )


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
    train = train_settings(run)
    if cache is None:
        cache = load_yaml(run / "config.yaml").get("cache")
        if not cache or not (Path(cache) / "manifest.json").is_file():
            raise DataError(
                f"{run}: its training cache {cache or '(none named)'} is gone; evaluate new data with --data DIR "
                "(preprocessed like the training data, from the run's preprocessing.json) or name one with --cache",
                [run],
            )
    store = CaseStore(cache)
    facts = {"in_channels": store.in_channels, "num_classes": store.num_classes, "spatial_dims": store.spatial_dims}
    state: dict = {}
    if train.get("model"):  # a model imaseg did not train (imaseg evaluate --model)
        network, path = load_foreign_model(train["model"], device), foreign_weights_file(train["model"])
        _check_output_channels(network, store, path, device)
    else:
        path = checkpoint_path(run, checkpoint)
        network, state = load_network(path, train, facts, device, data_root=store.root)
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
        patch_size=[int(p) for p in train["patch_size"]] if train.get("patch_size") else None,
    )
