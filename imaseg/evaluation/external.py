"""A run folder for a model imaseg did not train (``imaseg evaluate --model PATH --data DIR --run OUT``).

``OUT/config.yaml`` names the model (a TorchScript file or a MONAI bundle folder) instead of a cache and
checkpoint, and ``OUT/preprocessing.json`` says how the data are prepared for it: a bundle exported by
``imaseg export`` carries its run's preprocessing and input range (the attacks' clip range) in
``configs/metadata.json``; any other model takes the
settings given (``--preprocess-config``, else the defaults of ``imaseg preprocess``). Evaluation, the CSV,
the JSON and the report then work as for an imaseg run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from imaseg.config import to_dict
from imaseg.data.errors import DataError
from imaseg.foreign import foreign_weights_file
from imaseg.run import RunDir
from imaseg.transforms.chain import PreprocessConfig

__all__ = ["bundle_preprocessing", "bundle_value_range", "prepare_external_run"]


def _metadata(model: Path) -> dict:
    path = model / "configs" / "metadata.json"
    if not (model.is_dir() and path.is_file()):
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error})", [path]) from None


def bundle_preprocessing(model: Path) -> dict | None:
    """The preprocessing record an imaseg-exported bundle carries, or ``None``."""
    record = _metadata(model).get("imaseg", {}).get("preprocessing")
    return record if isinstance(record, dict) else None


def bundle_value_range(model: Path) -> list[float] | None:
    """The input value range a bundle's metadata declares (the attacks' clip range), or ``None``."""
    inputs: dict = _metadata(model).get("network_data_format", {}).get("inputs", {})
    first: dict = next(iter(inputs.values()), {})
    value_range = first.get("value_range")
    return [float(v) for v in value_range] if isinstance(value_range, list) and len(value_range) == 2 else None


def prepare_external_run(
    model: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    preprocess: PreprocessConfig | None = None,
    clip_range: Sequence[float] | None = None,
) -> Path:
    """Write ``run_dir/config.yaml`` and ``preprocessing.json`` for ``model``; returns the run folder.

    Raises:
        DataError: the model is neither a TorchScript file nor a bundle with weights.
    """
    model = Path(model).resolve()
    foreign_weights_file(model)  # fails early, naming the file, when the model is not there
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    record = bundle_preprocessing(model)
    clip_range = clip_range or bundle_value_range(model)
    if record is None:
        record = {"config": to_dict(preprocess or PreprocessConfig())}
    kind = "MONAI bundle" if model.is_dir() else "TorchScript"
    sections = {
        "cache": None,
        "train": {"method": "external", "model": str(model), "clip_range": clip_range},
        "method": {"name": "external", "label": f"{model.name} (external)", "settings": f"{kind} {model}"},
    }
    run.write_config(sections)
    run.write_preprocessing(record)
    return run.path
