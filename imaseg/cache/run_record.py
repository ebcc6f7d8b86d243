"""What a run folder keeps of its training data, so it works without the cache it was trained on.

``RUN/preprocessing.json`` holds the preprocessing settings (modality, intensity scaling, orientation,
spacing, size, 2D/3D mode), the label names and values, and the channel count: everything
``imaseg predict`` and ``imaseg evaluate --data`` need to prepare new images exactly as the training
data were. The cache path in ``config.yaml`` is then only a hint: moving or deleting the cache breaks
nothing but ``evaluate`` on the cache itself.

Runs trained before this file existed fall back to the manifest of the cache ``config.yaml`` names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from imaseg.cache.manifest import read_manifest
from imaseg.config import load_yaml
from imaseg.data.errors import DataError

__all__ = ["PREPROCESSING_NAME", "preprocessing_record", "read_preprocessing_record"]

PREPROCESSING_NAME = "preprocessing.json"
_KEYS = ("config", "modality", "labels", "num_classes", "class_values", "in_channels", "spatial_dims", "dataset")


def preprocessing_record(manifest: dict) -> dict:
    """The part of a cache manifest that describes how data are prepared (no paths, no cases).

    >>> record = preprocessing_record({"config": {"mode": "2d"}, "modality": "mri", "labels": {"1": "LV"},
    ...     "num_classes": 2, "in_channels": 1, "spatial_dims": 2, "cases": [], "data_dir": "/x"})
    >>> sorted(record), record["class_values"]
    (['class_values', 'config', 'dataset', 'in_channels', 'labels', 'modality', 'num_classes', 'source_dims', 'spatial_dims'], [0, 1])
    """
    record = {k: manifest[k] for k in _KEYS if k in manifest}
    record.setdefault("class_values", list(range(int(manifest["num_classes"]))))
    record.setdefault("dataset", {})
    cases = manifest.get("cases") or []
    record["source_dims"] = max((int(c.get("source_dims", 3)) for c in cases), default=int(manifest["spatial_dims"]))
    return record


def read_preprocessing_record(run_dir: str | os.PathLike[str]) -> dict:
    """The run's own ``preprocessing.json``, else the manifest of the cache its ``config.yaml`` names.

    Raises:
        DataError: neither exists (naming both places and the fix).
    """
    run = Path(run_dir)
    path = run / PREPROCESSING_NAME
    if path.is_file():
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not valid JSON ({error}); restore it from a copy of the run", [path]) from None
    cache = _cache_hint(run)
    if cache is not None and (Path(cache) / "manifest.json").is_file():
        return preprocessing_record(read_manifest(cache))
    raise DataError(
        f"{run}: no {PREPROCESSING_NAME} and the training cache {cache or '(none named)'} is gone; this run was "
        "trained before runs kept their preprocessing: restore the cache, or retrain",
        [run],
    )


def _cache_hint(run: Path) -> str | None:
    config = run / "config.yaml"
    if not config.is_file():
        raise DataError(f"{run}: no config.yaml; is this a run folder written by `imaseg train`?", [run])
    value = load_yaml(config).get("cache")
    return str(value) if value else None
