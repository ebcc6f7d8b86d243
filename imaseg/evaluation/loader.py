"""Load a trained run for evaluation: network + config + data, checked against each other."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from imaseg.cache.manifest import MANIFEST_NAME
from imaseg.cache.reader import CaseStore
from imaseg.data.errors import DataError
from imaseg.foreign import foreign_weights_file, load_foreign_model
from imaseg.run import RunDir, parse_clip_range
from imaseg.run_model import RunModel, load_run_model

__all__ = ["LoadedRun", "load_run"]


@dataclass
class LoadedRun(RunModel):
    """A trained network with the data evaluation scores (the run's cache, or another one)."""

    store: CaseStore = field(default=None)  # type: ignore[assignment]  # always set by load_run


def _check_output_channels(network: nn.Module, store: CaseStore, path: Path, device) -> None:
    """A foreign model must give one logit channel per class of the data: probe it on the first sample."""
    case = store.load_case(store.case_ids("all")[0])
    image = torch.from_numpy(case.image)
    axis = case.meta.slice_axis
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


def _open_store(run: RunDir, cache: str | os.PathLike[str] | None) -> CaseStore:
    if cache is None:
        cache = run.cache_hint()
        if not cache or not (Path(cache) / MANIFEST_NAME).is_file():
            raise DataError(
                f"{run.path}: its training cache {cache or '(none named)'} is gone; evaluate new data with --data DIR "
                "(preprocessed like the training data, from the run's preprocessing.json) or name one with --cache",
                [run.path],
            )
    return CaseStore(cache)


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
    run = RunDir(run_dir)
    train = run.train_settings()
    store = _open_store(run, cache)
    if train.get("model"):  # a model imaseg did not train (imaseg evaluate --model)
        network, path = load_foreign_model(train["model"], device), foreign_weights_file(train["model"])
        _check_output_channels(network, store, path, device)
        return LoadedRun(
            run.path,
            network,
            path,
            fold=int(train.get("fold", 0)),
            method=str(train.get("method", "std")),
            clip_range=parse_clip_range(train.get("clip_range")),
            store=store,
        )
    if train.get("nnunet"):  # one fold of an nnU-Net v2 model (imaseg evaluate --nnunet)
        from imaseg.nnunet.run import load_for_evaluation

        network, path, epoch = load_for_evaluation(train["nnunet"], checkpoint, device, num_classes=store.num_classes)
        return LoadedRun(
            run.path,
            network,
            path,
            epoch,
            method=str(train.get("method", "external")),
            clip_range=parse_clip_range(train.get("clip_range")),
            store=store,
        )
    model = load_run_model(run.path, checkpoint, device, facts=store.manifest.data_shape, data_root=store.root)
    return LoadedRun(**{f.name: getattr(model, f.name) for f in fields(model)}, store=store)
