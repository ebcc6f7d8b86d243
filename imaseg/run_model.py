"""A trained run's network, rebuilt from its folder: the one loader below evaluation, prediction and export.

:func:`load_run_model` reads the run's settings through :class:`imaseg.run.RunDir`, rebuilds the network
for data of the given shape (channels, classes, spatial dims), loads the checkpoint's weights and puts the
network in eval mode. Evaluation adds the data it scores (:class:`imaseg.evaluation.loader.LoadedRun`);
prediction and export add the run's preprocessing record.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imaseg.cache.manifest import DataShape
from imaseg.cache.run_record import PreprocessingRecord, read_preprocessing_record
from imaseg.checkpoint import load_checkpoint, load_weights
from imaseg.data.errors import DataError
from imaseg.networks import NetworkConfig, require_trusted_factory
from imaseg.run import RunDir, parse_clip_range
from imaseg.transforms.chain import PreprocessConfig

__all__ = ["RunModel", "load_network", "load_run_model", "rebuild_network"]


@dataclass
class RunModel:
    """A trained network with what later stages need to know of its run (read from its files only)."""

    run_dir: Path
    network: nn.Module
    checkpoint: Path
    epoch: int = 0
    fold: int = 0
    method: str = "std"
    clip_range: tuple[float, float] | None = None
    patch_size: list[int] | None = None  # trained on 3D patches: the default sliding window
    record: PreprocessingRecord | None = None  # the run's preprocessing.json (prediction and export)

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)

    @functools.cached_property
    def preprocess(self) -> PreprocessConfig:  # parsed once, read for every case
        return self.preprocessing_record.preprocess_config()

    @property
    def num_classes(self) -> int:
        return self.preprocessing_record.num_classes

    @property
    def names(self) -> dict[int, str]:
        return self.preprocessing_record.class_names

    @property
    def preprocessing_record(self) -> PreprocessingRecord:
        """The run's ``preprocessing.json`` (loaded by :func:`load_run_model` without ``facts``)."""
        if self.record is None:
            raise ValueError(f"{self.run_dir}: loaded without its preprocessing record")
        return self.record


def rebuild_network(
    train: Mapping[str, Any], facts: DataShape, *, source: object = "the run's config.yaml"
) -> nn.Module:
    """The run's network (from its ``train`` settings, read from ``source``) for data with ``facts``:
    ``in_channels``, ``num_classes``, ``spatial_dims``. A network factory of one's own is imported only when
    trusted (:func:`imaseg.networks.require_trusted_factory`)."""
    network = NetworkConfig.from_mapping(dict(train))
    require_trusted_factory(network.name, source)
    return network.build(facts.spatial_dims, facts.in_channels, facts.num_classes)


def load_network(
    path: Path,
    train: Mapping[str, Any],
    facts: DataShape,
    device: torch.device | str,
    *,
    data_root: object = None,
    source: object = "the run's config.yaml",
) -> tuple[nn.Module, dict]:
    """The run's network rebuilt for data with ``facts``, with the weights of checkpoint ``path``, in eval mode
    on ``device``; returns the network and the checkpoint's state.

    Raises:
        DataError: the checkpoint was trained on data of another shape, or its weights do not fit.
    """
    state = load_checkpoint(path, map_location="cpu")
    mismatched = facts.mismatches(state.get("data", {}))
    if mismatched:
        details = ", ".join(f"{k}: checkpoint {a} vs data {b}" for k, (a, b) in mismatched.items())
        raise DataError(
            f"{path} does not match the data in {data_root} ({details}); use data preprocessed like the "
            "training cache (same channels, labels and 2D/3D mode)",
            [path, Path(str(data_root))] if data_root is not None else [path],
        )
    network = rebuild_network(train, facts, source=source)
    try:
        load_weights(network, state["network"], path)
    except ValueError as error:
        raise DataError(str(error), [path]) from None
    network.to(device).eval()
    return network, state


def load_run_model(
    run_dir: str | os.PathLike[str],
    checkpoint: str = "last",
    device: torch.device | str = "cpu",
    *,
    facts: DataShape | None = None,
    data_root: object = None,
) -> RunModel:
    """Rebuild a run's network; ``facts`` (channels, classes, dims) default to the run's preprocessing record,
    which is then kept in the result (the training cache is not needed).

    Raises:
        FileNotFoundError: no checkpoint.
        DataError: no preprocessing record (and no cache to fall back on), or weights that do not fit the data.
    """
    run = RunDir(run_dir)
    train = run.train_settings()
    record = None
    if facts is None:
        record = read_preprocessing_record(run.path)
        facts = record.data_shape
    path = run.checkpoint(checkpoint)
    network, state = load_network(
        path, train, facts, device, data_root=data_root if data_root is not None else run.path, source=run.config_path
    )
    return RunModel(
        run.path,
        network,
        path,
        int(state.get("epoch", 0)),
        fold=int(train.get("fold", 0)),
        method=str(train.get("method", "std")),
        clip_range=parse_clip_range(train.get("clip_range")),
        patch_size=[int(p) for p in train["patch_size"]] if train.get("patch_size") else None,
        record=record,
    )
