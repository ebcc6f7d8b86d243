"""What a run folder keeps of its training data, so it works without the cache it was trained on.

``RUN/preprocessing.json`` (:class:`PreprocessingRecord`) holds the preprocessing settings (modality,
intensity scaling, orientation, spacing, size, 2D/3D mode), the label names and values, and the channel
count: everything ``imaseg predict`` and ``imaseg evaluate --data`` need to prepare new images exactly as
the training data were. The cache path in ``config.yaml`` is then only a hint: moving or deleting the
cache breaks nothing but ``evaluate`` on the cache itself.

Runs trained before this file existed fall back to the manifest of the cache ``config.yaml`` names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaseg.cache.case_meta import missing_keys
from imaseg.cache.manifest import MANIFEST_NAME, DatasetSource, DataShape, Manifest
from imaseg.config import config_from_dict
from imaseg.data.errors import DataError
from imaseg.run import RunDir
from imaseg.transforms.chain import PreprocessConfig

__all__ = ["PREPROCESSING_NAME", "PreprocessingRecord", "preprocessing_record", "read_preprocessing_record"]

PREPROCESSING_NAME = RunDir.PREPROCESSING
_RESTORE = "restore it from a copy of the run, or retrain"


@dataclass(frozen=True)
class PreprocessingRecord:
    """The part of a cache manifest that says how data are prepared (no paths, no cases).

    ``shape`` (channels, classes, spatial dims) is ``None`` in the record of a model imaseg did not train
    (``imaseg evaluate --model``), which states only its ``config``; asking such a record for its shape
    raises. ``source_dims`` is the spatial dimensionality of the source images (3 for a 2D model on
    volumes); ``dataset`` is ``None`` in records that stored none.
    """

    config: dict[str, Any]
    modality: str = "other"
    labels: dict[int, str] = field(default_factory=dict)
    shape: DataShape | None = None
    class_values: tuple[int, ...] = ()
    dataset: DatasetSource | None = None
    source_dims: int = 3
    source: str = field(default=PREPROCESSING_NAME, compare=False, repr=False)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> PreprocessingRecord:
        return cls(
            dict(manifest.config),
            manifest.modality,
            dict(manifest.labels),
            manifest.data_shape,
            manifest.class_values,
            manifest.dataset,
            manifest.source_dims,
        )

    @property
    def data_shape(self) -> DataShape:
        """Channels, classes and spatial dims of the training data.

        Raises:
            DataError: the record states none (a model imaseg did not train).
        """
        if self.shape is None:
            raise DataError(
                f"{self.source}: states no channels, classes or spatial dims (a model imaseg did not train?); "
                "use a run folder written by `imaseg train`",
                [self.source],
            )
        return self.shape

    @property
    def num_classes(self) -> int:
        return self.data_shape.num_classes

    @property
    def in_channels(self) -> int:
        return self.data_shape.in_channels

    @property
    def spatial_dims(self) -> int:
        return self.data_shape.spatial_dims

    @property
    def class_names(self) -> dict[int, str]:
        return dict(self.labels)

    def preprocess_config(self) -> PreprocessConfig:
        """The preprocessing settings as a :class:`PreprocessConfig`."""
        return config_from_dict(PreprocessConfig, self.config, source=f"{self.source}: config")

    def to_json(self) -> dict[str, Any]:
        """The stored record (also embedded in exported bundles), keys in the order runs have always stored."""
        record: dict[str, Any] = {"config": dict(self.config), "modality": self.modality}
        record["labels"] = {str(k): v for k, v in self.labels.items()}
        if self.shape is not None:
            record["num_classes"] = self.shape.num_classes
        record["class_values"] = list(self.class_values)
        if self.shape is not None:
            record["in_channels"] = self.shape.in_channels
            record["spatial_dims"] = self.shape.spatial_dims
        record["dataset"] = self.dataset.to_json() if self.dataset is not None else {}
        record["source_dims"] = self.source_dims
        return record

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], *, source: str | os.PathLike[str] = PREPROCESSING_NAME
    ) -> PreprocessingRecord:
        """Parse a stored record: older ones without labels, class values or source dims get their defaults;
        one without channels, classes and spatial dims (a model imaseg did not train) has no ``shape``.

        Raises:
            DataError: no ``config``, part of the shape, or a malformed value (naming ``source`` and the fix).
        """
        missing_keys(data, ("config",), source, "the run's preprocessing record", _RESTORE)
        shape_keys = ("in_channels", "num_classes", "spatial_dims")
        if any(k in data for k in shape_keys):
            missing_keys(data, shape_keys, source, "the run's preprocessing record", _RESTORE)
        try:
            shape = DataShape(*(int(data[k]) for k in shape_keys)) if "num_classes" in data else None
            return cls(
                dict(data["config"]),
                str(data.get("modality", "other")),
                {int(k): str(v) for k, v in (data.get("labels") or {}).items()},
                shape,
                tuple(int(v) for v in (data.get("class_values") or range(shape.num_classes if shape else 0))),
                DatasetSource.from_json(data["dataset"]) if data.get("dataset") else None,
                int(data.get("source_dims", shape.spatial_dims if shape else 3)),
                str(source),
            )
        except (TypeError, ValueError, AttributeError) as error:
            raise DataError(f"{source}: malformed preprocessing record ({error}); {_RESTORE}", [source]) from None


def preprocessing_record(manifest: Manifest) -> dict[str, Any]:
    """What ``preprocessing.json`` stores for a run trained on ``manifest``'s cache (JSON-ready)."""
    return PreprocessingRecord.from_manifest(manifest).to_json()


def read_preprocessing_record(run_dir: str | os.PathLike[str]) -> PreprocessingRecord:
    """The run's own ``preprocessing.json``, else the manifest of the cache its ``config.yaml`` names.

    Raises:
        DataError: neither exists (naming both places and the fix).
    """
    run = RunDir(run_dir)
    stored = run.read_preprocessing()
    if stored is not None:
        return PreprocessingRecord.from_json(stored, source=run.preprocessing_path)
    cache = run.cache_hint()
    if cache is not None and (Path(cache) / MANIFEST_NAME).is_file():
        return PreprocessingRecord.from_manifest(Manifest.read(cache))
    raise DataError(
        f"{run.path}: no {PREPROCESSING_NAME} and the training cache {cache or '(none named)'} is gone; this run was "
        "trained before runs kept their preprocessing: restore the cache, or retrain",
        [run.path],
    )
