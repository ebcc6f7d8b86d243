"""``imaseg preprocess``: a NIfTI folder -> a cache of preprocessed cases plus a manifest.

Layout of the cache folder::

    manifest.json     cases (id, patient group, fold, source files, shapes, sample ids), the split of
                      every fold, label names, the resolved config, fingerprints
    config.yaml       the resolved preprocessing config
    cases/CASE.npz    image (C, *spatial) float32, label (*spatial) uint8 (int32 when a value exceeds 255), affine of the preprocessed
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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from imaseg.cache.case_meta import CaseMeta
from imaseg.cache.manifest import (
    CASES_DIR,
    CONFIG_NAME,
    MANIFEST_NAME,
    DatasetSource,
    Manifest,
    class_values,
    sample_id,
)
from imaseg.cache.split import FoldSplit, assign_folds, patient_groups, split_for_fold
from imaseg.config import save_config, to_dict
from imaseg.data.check import MAX_LABEL_VALUE, validate_case
from imaseg.data.discover import DatasetInfo, discover_with_info
from imaseg.data.errors import DataError
from imaseg.transforms.chain import PreprocessConfig, build_preprocessing, resolve_modality
from imaseg.utils.atomic import atomic_path, atomic_write_json
from imaseg.utils.paths import refuse_output_in_input

__all__ = ["preprocess_dataset"]

logger = logging.getLogger(__name__)

# keep_empty_slices is not split-only: the kept slice indices are stored in each case file's meta
_SPLIT_ONLY = {"folds", "val_groups", "group_regex", "group_map", "seed"}


def _fingerprint(config: PreprocessConfig, entry: dict) -> str:
    settings = {k: v for k, v in to_dict(config).items() if k not in _SPLIT_ONLY}
    files = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
    stats = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in [*files, entry["label"]]]
    return hashlib.sha256(json.dumps([settings, stats], sort_keys=True).encode()).hexdigest()[:20]


def _class_names(declared: dict[int, str], values: list[int]) -> dict[int, str]:
    """Names per class index: the declared ones (undeclared classes of a gap stay unnamed), or ``class V``."""
    if declared:
        return {i: declared[v] for i, v in enumerate(values) if v in declared}
    return {i: f"class {v}" for i, v in enumerate(values)}


def preprocess_dataset(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: PreprocessConfig,
    *,
    progress: bool = True,
    allow_outside_paths: bool = False,
) -> Manifest:
    """Preprocess every case of ``data_dir`` into ``out_dir`` and return the manifest.

    ``allow_outside_paths`` accepts dataset.json entries outside ``data_dir`` (refused by default).

    Raises:
        DataError: bad input, naming the file (from discovery or the per-case check), or label maps that hold
            background only.
        ValueError: ``out_dir`` is ``data_dir`` or inside it.
    """
    refuse_output_in_input(out_dir, {"--data": data_dir}, output_flag="--out")
    out_dir = Path(out_dir)
    if not (out_dir / CASES_DIR).is_dir():
        (out_dir / CASES_DIR).mkdir(parents=True, exist_ok=True)
    datalist, info = discover_with_info(data_dir, allow_outside_paths=allow_outside_paths)
    modality = resolve_modality(config, info.modality)
    chains: dict[int, object] = {}
    cases: list[CaseMeta] = []
    reused = 0
    iterator = datalist
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(datalist, desc="preprocessing", unit="case")
    for entry in iterator:
        fingerprint = _fingerprint(config, entry)
        path = out_dir / CASES_DIR / f"{entry['case']}.npz"
        meta = _read_case_meta(path, fingerprint)
        if meta is None:
            _invalidate_manifest(out_dir)  # before the first rewrite: an interrupted run leaves no stale manifest
            meta = _preprocess_case(entry, info, config, modality, chains, path, fingerprint)
        else:
            reused += 1
        cases.append(meta)
    logger.info("%d cases preprocessed, %d reused from %s", len(cases) - reused, reused, out_dir)
    manifest = _build_manifest(data_dir, out_dir, config, info, modality, cases)
    previous = _previous_manifest(out_dir)
    if previous is not None and _same_manifest(previous, manifest):
        return previous  # nothing changed: write nothing (a finished cache may live on a read-only disk)
    atomic_write_json(out_dir / MANIFEST_NAME, manifest.to_json())
    save_config(out_dir / CONFIG_NAME, {"preprocess": config})
    return manifest


def _invalidate_manifest(out_dir: Path) -> None:
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)


def _previous_manifest(out_dir: Path) -> Manifest | None:
    try:
        return Manifest.read(out_dir)
    except (OSError, ValueError):  # DataError included: absent, damaged or of another version
        return None


def _same_manifest(previous: Manifest, manifest: Manifest) -> bool:
    """Equal but for the creation time (compared through JSON, as it is stored)."""
    stored = replace(previous, created=manifest.created).to_json()
    return json.dumps(stored, sort_keys=True) == json.dumps(manifest.to_json(), sort_keys=True)


def _read_case_meta(path: Path, fingerprint: str) -> CaseMeta | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = CaseMeta.from_json(json.loads(str(data["meta"])), source=path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return meta if meta.fingerprint == fingerprint else None


# Resampling that grows an axis (or the whole case) more than this is refused: a broken pixdim, not a plan.
MAX_AXIS_GROWTH = 32.0
MAX_VOXEL_GROWTH = 64.0


def _check_resampling(entry: dict, report, config: PreprocessConfig, spatial_dims: int) -> None:
    """Refuse a ``--spacing`` that would blow a case up (e.g. a 500 mm slice resampled to 1 mm)."""
    if not config.spacing:
        return
    factors = [
        float(src) / float(dst) if dst and dst > 0 else 1.0
        for src, dst in zip(report.spacing[:spatial_dims], config.spacing[:spatial_dims])
    ]
    total = float(np.prod(factors))
    worst = max(range(len(factors)), key=lambda a: factors[a])
    if factors[worst] > MAX_AXIS_GROWTH or total > MAX_VOXEL_GROWTH:
        expected = [max(1, round(n * f)) for n, f in zip(report.shape[:spatial_dims], factors)]
        raise DataError(
            f"{entry['image']}: resampling its spacing {_fmt_mm(report.spacing[:spatial_dims])} mm to "
            f"{_fmt_mm(config.spacing[:spatial_dims])} mm would turn {list(report.shape[:spatial_dims])} voxels into "
            f"about {expected} (x{factors[worst]:.0f} along axis {worst}); fix the file's pixdim or pick a --spacing "
            "closer to the data's (<= 0 keeps an axis)",
            [entry["image"]],
        )


def _fmt_mm(values) -> str:
    return " x ".join(f"{float(v):g}" for v in values)


def _label_array(label, entry: dict) -> np.ndarray:
    """The label map as stored in the cache: uint8 when every value fits, else int32 (values above
    :data:`~imaseg.data.check.MAX_LABEL_VALUE` are refused, never wrapped)."""
    array = np.rint(label.as_tensor()[0].numpy()).astype(np.int64)
    if array.size and array.min() < 0:
        raise DataError(f"{entry['label']}: negative label values after preprocessing", [entry["label"]])
    if array.max(initial=0) > MAX_LABEL_VALUE:
        raise DataError(
            f"{entry['label']}: label values up to {array.max()} exceed {MAX_LABEL_VALUE} (2^31 - 1), the largest "
            "class value the cache stores; relabel the map to small class indices (0 background, 1, 2, ...)",
            [entry["label"]],
        )
    return array.astype(np.uint8 if array.max(initial=0) <= 255 else np.int32)


def _warn_erased(entry: dict, before: dict[int, int], label_np: np.ndarray) -> list[str]:
    """Classes that preprocessing erased from a case (e.g. resampling a thin structure away)."""
    after = set(np.unique(label_np).tolist())
    erased = sorted(v for v, n in before.items() if v != 0 and n > 0 and v not in after)
    if not erased:
        return []
    message = (
        f"{entry['label']}: label values {erased} vanished in preprocessing (resampling or resizing erased them); "
        "check --spacing / --spatial-size or the file's pixdim"
    )
    logger.warning(message)
    return [message]


def _preprocess_case(entry, info, config, modality, chains, path: Path, fingerprint: str) -> CaseMeta:
    report = validate_case(entry, info)
    spatial_dims = min(len(report.shape), 3)
    _check_resampling(entry, report, config, spatial_dims)
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
    label_np = _label_array(label, entry)
    erased = _warn_erased(entry, report.label_counts, label_np)
    slice_axis = config.slice_axis if (config.mode == "2d" and spatial_dims == 3) else None
    if slice_axis is not None:
        reduce_axes = tuple(a for a in range(label_np.ndim) if a != slice_axis)
        has_fg = np.asarray((label_np > 0).any(axis=reduce_axes))
        indices = [int(i) for i in range(label_np.shape[slice_axis]) if config.keep_empty_slices or has_fg[i]]
        ids = [sample_id(entry["case"], i) for i in indices]
    else:
        indices, ids = [], [sample_id(entry["case"], None)]
    image_files = entry["image"]
    meta = CaseMeta(
        case=entry["case"],
        image=image_files if isinstance(image_files, str) else tuple(image_files),
        label=entry["label"],
        file=f"{CASES_DIR}/{path.name}",
        fingerprint=fingerprint,
        source_shape=tuple(report.shape[:spatial_dims]),
        source_spacing=tuple(report.spacing),
        shape=tuple(image_np.shape),
        source_dims=spatial_dims,
        slice_axis=slice_axis,
        slice_indices=tuple(indices),
        sample_ids=tuple(ids),
        max_label=int(label_np.max(initial=0)),
        label_values=tuple(int(v) for v in np.unique(label_np)),
        warnings=tuple(erased),
        intensity_scale=float(image.meta.get("intensity_scale", 1.0)),
        intensity_offset=float(image.meta.get("intensity_offset", 0.0)),
    )
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
                meta=np.array(json.dumps(meta.to_json())),
            )
    return meta


def _build_manifest(
    data_dir, out_dir: Path, config: PreprocessConfig, info: DatasetInfo, modality: str, cases: list[CaseMeta]
) -> Manifest:
    groups = patient_groups([c.case for c in cases], config.group_regex, config.group_map)
    group_folds = assign_folds(groups.values(), config.folds, config.seed)
    cases = [c.in_split(groups[c.case], group_folds[groups[c.case]]) for c in cases]
    splits = {
        k: FoldSplit.from_json(split_for_fold(groups, group_folds, k, config.val_groups, config.seed))
        for k in range(config.folds)
    }
    values = class_values(info.labels, [v for c in cases for v in c.label_values])
    if len(values) < 2:
        raise DataError(
            f"{data_dir}: every label map holds background only ({values}) and dataset.json declares no other class: "
            "a segmenter needs at least one structure; check the label files (`imaseg check` lists each case's values)",
            [data_dir],
        )
    spatial_dims = 2 if config.mode == "2d" else max(c.source_dims for c in cases)
    in_channels = {c.shape[0] for c in cases}
    if len(in_channels) != 1:
        raise DataError(f"{data_dir}: cases have different channel counts {sorted(in_channels)}")
    return Manifest(
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        data_dir=str(Path(data_dir).resolve()),
        dataset=DatasetSource(info.name, info.layout, info.modality),
        modality=modality,
        labels=_class_names(info.labels, values),
        num_classes=len(values),
        class_values=tuple(values),
        in_channels=in_channels.pop(),
        spatial_dims=spatial_dims,
        config=to_dict(config),
        cases=tuple(cases),
        splits=splits,
        num_samples=sum(len(c.sample_ids) for c in cases),
    )
