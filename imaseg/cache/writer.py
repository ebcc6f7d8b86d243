"""``imaseg preprocess``: a NIfTI folder -> a cache of preprocessed cases plus a manifest.

Layout of the cache folder::

    manifest.json     cases (id, patient group, fold, source files, shapes, sample ids), the split of
                      every fold, label names, the resolved config, fingerprints
    config.yaml       the resolved preprocessing config
    cases/CASE.npz    image (C, *spatial) float32, label (*spatial) uint8, affine of the preprocessed
                      grid, the source geometry and the intensity map

Rerunning on an unchanged input (same files, same array-relevant settings) reuses each case file;
only the split is recomputed, which is cheap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from imaseg.cache.manifest import MANIFEST_NAME, sample_id
from imaseg.cache.split import assign_folds, patient_groups, split_for_fold
from imaseg.config import save_config, to_dict
from imaseg.data.check import validate_case
from imaseg.data.discover import DatasetInfo, discover_with_info
from imaseg.data.errors import DataError
from imaseg.transforms.chain import PreprocessConfig, build_preprocessing, resolve_modality
from imaseg.utils.atomic import atomic_path, atomic_write_json

__all__ = ["preprocess_dataset"]

logger = logging.getLogger(__name__)

# keep_empty_slices is not split-only: the kept slice indices are stored in each case file's meta
_SPLIT_ONLY = {"folds", "val_groups", "group_regex", "group_map", "seed"}


def _fingerprint(config: PreprocessConfig, entry: dict) -> str:
    settings = {k: v for k, v in to_dict(config).items() if k not in _SPLIT_ONLY}
    files = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
    stats = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in [*files, entry["label"]]]
    return hashlib.sha256(json.dumps([settings, stats], sort_keys=True).encode()).hexdigest()[:20]


def _num_classes(info: DatasetInfo, seen: int) -> int:
    return max([*info.labels, seen]) + 1 if info.labels else seen + 1


def preprocess_dataset(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: PreprocessConfig,
    *,
    progress: bool = True,
) -> dict:
    """Preprocess every case of ``data_dir`` into ``out_dir`` and return the manifest.

    Raises:
        DataError: bad input, naming the file (from discovery or the per-case check).
    """
    out_dir = Path(out_dir)
    (out_dir / "cases").mkdir(parents=True, exist_ok=True)
    datalist, info = discover_with_info(data_dir)
    modality = resolve_modality(config, info.modality)
    chains: dict[int, object] = {}
    cases, reused = [], 0
    iterator = datalist
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(datalist, desc="preprocessing", unit="case")
    for entry in iterator:
        fingerprint = _fingerprint(config, entry)
        path = out_dir / "cases" / f"{entry['case']}.npz"
        meta = _read_case_meta(path, fingerprint)
        if meta is None:
            meta = _preprocess_case(entry, info, config, modality, chains, path, fingerprint)
        else:
            reused += 1
        cases.append(meta)
    logger.info("%d cases preprocessed, %d reused from %s", len(cases) - reused, reused, out_dir)
    manifest = _build_manifest(data_dir, out_dir, config, info, modality, cases)
    atomic_write_json(out_dir / MANIFEST_NAME, manifest)
    save_config(out_dir / "config.yaml", {"preprocess": config})
    return manifest


def _read_case_meta(path: Path, fingerprint: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return meta if meta.get("fingerprint") == fingerprint else None


def _preprocess_case(entry, info, config, modality, chains, path: Path, fingerprint: str) -> dict:
    report = validate_case(entry, info)
    spatial_dims = min(len(report.shape), 3)
    if spatial_dims not in chains:
        chains[spatial_dims] = build_preprocessing(config, modality, spatial_dims)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's channel-first hints on 2D images
        try:
            out = chains[spatial_dims]({"image": entry["image"], "label": entry["label"]})
        except DataError:
            raise
        except (RuntimeError, ValueError) as error:
            raise DataError(f"{entry['image']}: preprocessing failed: {error}", [entry["image"]]) from error
    image, label = out["image"], out["label"]
    image_np = image.as_tensor().numpy().astype(np.float32)
    label_np = label.as_tensor()[0].numpy().astype(np.uint8)
    slice_axis = config.slice_axis if (config.mode == "2d" and spatial_dims == 3) else None
    if slice_axis is not None:
        reduce_axes = tuple(a for a in range(label_np.ndim) if a != slice_axis)
        has_fg = (label_np > 0).any(axis=reduce_axes)
        indices = [int(i) for i in range(label_np.shape[slice_axis]) if config.keep_empty_slices or has_fg[i]]
        ids = [sample_id(entry["case"], i) for i in indices]
    else:
        indices, ids = [], [sample_id(entry["case"], None)]
    meta = {
        "case": entry["case"],
        "image": entry["image"],
        "label": entry["label"],
        "file": f"cases/{path.name}",
        "fingerprint": fingerprint,
        "source_shape": list(report.shape[:spatial_dims]),
        "source_spacing": list(report.spacing),
        "shape": list(image_np.shape),
        "source_dims": spatial_dims,
        "slice_axis": slice_axis,
        "slice_indices": indices,
        "sample_ids": ids,
        "max_label": int(label_np.max(initial=0)),
        "intensity_scale": float(image.meta.get("intensity_scale", 1.0)),
        "intensity_offset": float(image.meta.get("intensity_offset", 0.0)),
    }
    affine = np.asarray(torch.as_tensor(image.affine), dtype=np.float64)
    source_affine = np.asarray(image.meta["source_affine"], dtype=np.float64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                image=image_np,
                label=label_np,
                affine=affine,
                source_affine=source_affine,
                meta=np.array(json.dumps(meta)),
            )
    return meta


def _build_manifest(data_dir, out_dir: Path, config: PreprocessConfig, info: DatasetInfo, modality: str, cases) -> dict:
    case_ids = [c["case"] for c in cases]
    groups = patient_groups(case_ids, config.group_regex, config.group_map)
    group_folds = assign_folds(groups.values(), config.folds, config.seed)
    for case in cases:
        case["group"] = groups[case["case"]]
        case["fold"] = group_folds[case["group"]]
    splits = {
        str(k): split_for_fold(groups, group_folds, k, config.val_groups, config.seed) for k in range(config.folds)
    }
    seen = max((c["max_label"] for c in cases), default=0)
    spatial_dims = 2 if config.mode == "2d" else max(c["source_dims"] for c in cases)
    in_channels = {c["shape"][0] for c in cases}
    if len(in_channels) != 1:
        raise DataError(f"{data_dir}: cases have different channel counts {sorted(in_channels)}")
    return {
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "data_dir": str(Path(data_dir).resolve()),
        "dataset": {"name": info.name, "layout": info.layout, "declared_modality": info.modality},
        "modality": modality,
        "labels": {str(k): v for k, v in info.labels.items()} or {str(i): f"class {i}" for i in range(seen + 1)},
        "num_classes": _num_classes(info, seen),
        "in_channels": in_channels.pop(),
        "spatial_dims": spatial_dims,
        "config": to_dict(config),
        "cases": cases,
        "splits": splits,
        "num_samples": sum(len(c["sample_ids"]) for c in cases),
    }
