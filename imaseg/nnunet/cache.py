"""A labelled data folder preprocessed by nnU-Net's own preprocessing, stored as an imaseg cache.

The cache has imaseg's layout (``manifest.json``, ``cases/CASE.npz``; :mod:`imaseg.cache.writer`), so
evaluation reads it like any other: each case's image is nnU-Net's preprocessed array ``(C, Z, Y, X)``
(what its predictor sees), the label nnU-Net's resampled segmentation. A 2D configuration is scored slice
by slice along the first axis (``slice_axis`` 0, budgets per slice, as imaseg does for 2D models); a 3D
configuration on the whole volume. Each case file also keeps nnU-Net's properties (``nnunet``, JSON) for
the export to source geometry, and the normalisation of each channel; ``intensity_scale`` is 1 over the
first channel's ``source_per_unit``, so ``eps_source`` in ``results.csv`` is the budget in source units.

The affines are those of the preprocessed and the source grid (crop offset, transpose, resampling scale),
so HD95 is in mm and ``--save-predictions`` can map back through them; nnU-Net's own export is in
:mod:`imaseg.nnunet.export`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from imaseg.cache.case_meta import CaseMeta, sample_id
from imaseg.cache.manifest import CASES_DIR, MANIFEST_NAME, DatasetSource, FoldSplit, Manifest
from imaseg.cache.split import patient_groups
from imaseg.data.discover import discover_with_info
from imaseg.data.errors import DataError
from imaseg.nnunet.model import NnUNetModel
from imaseg.nnunet.preprocessing import PreprocessedCase, preprocess_case, properties_from_json, properties_to_json
from imaseg.transforms.chain import PreprocessConfig, resolve_modality
from imaseg.utils.atomic import atomic_path, atomic_write_json
from imaseg.utils.paths import refuse_output_in_input

__all__ = ["case_properties", "grid_affines", "preprocess_with_nnunet"]

logger = logging.getLogger(__name__)


def _sitk_affine(stuff: dict[str, Any]) -> np.ndarray:
    """World (RAS) of SimpleITK index (x, y, z) from the reader's spacing, origin and direction (LPS)."""
    n = len(stuff["spacing"])
    direction = np.eye(3)
    direction[:n, :n] = np.reshape(np.asarray(stuff["direction"], dtype=np.float64), (n, n))
    spacing = [*map(float, stuff["spacing"]), 1.0, 1.0][:3]
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(spacing)
    lps[:3, 3] = [*map(float, stuff["origin"]), 0.0, 0.0][:3]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _source_affine(properties: dict[str, Any]) -> np.ndarray:
    """The source grid's affine, for index order (x, y, z) = nnU-Net's array order reversed."""
    if "sitk_stuff" in properties:
        return _sitk_affine(properties["sitk_stuff"])
    stuff = properties.get("nibabel_stuff") or {}
    affine = stuff.get("reoriented_affine", stuff.get("original_affine"))
    if affine is not None:
        return np.asarray(affine, dtype=np.float64)
    return np.diag([*reversed([float(s) for s in properties["spacing"]]), 1.0])


def grid_affines(properties: dict[str, Any], transpose_forward: list[int], shape: tuple[int, ...]) -> tuple:
    """``(affine, source_affine, source_shape)``: the preprocessed grid of ``shape`` (spatial) and the source grid.

    A preprocessed index ``p`` (transposed order) is the cropped index ``bbox_lo + (p + 0.5) * scale - 0.5``
    (nnU-Net resamples centre to centre), which the transpose maps to an array axis, reversed for SimpleITK.
    """
    dims = len(shape)
    before = [int(s) for s in properties["shape_before_cropping"]]
    cropped = [int(s) for s in properties["shape_after_cropping_and_before_resampling"]]
    bbox = properties["bbox_used_for_cropping"]
    index = np.zeros((4, 4))
    index[3, 3] = 1.0
    for t in range(dims):
        scale = cropped[t] / shape[t]
        axis = dims - 1 - int(transpose_forward[t])  # array axis -> SimpleITK (reversed) index axis
        index[axis, t] = scale
        index[axis, 3] = float(bbox[t][0]) + 0.5 * scale - 0.5
    source = _source_affine(properties)
    original = [before[transpose_forward.index(a)] for a in range(dims)]  # array order before the transpose
    return source @ index, source, tuple(reversed(original))


def _fingerprint(model: NnUNetModel, entry: dict) -> str:
    files = [*_image_files(entry), entry["label"]]
    stats = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in files]
    plans = json.dumps([model.results.plans, model.configuration, model.results.dataset_json], sort_keys=True)
    return hashlib.sha256(json.dumps([plans, stats]).encode()).hexdigest()[:20]


def _image_files(entry: dict) -> list[str]:
    return [entry["image"]] if isinstance(entry["image"], str) else list(entry["image"])


def _read_meta(path: Path, fingerprint: str) -> CaseMeta | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = CaseMeta.from_json(json.loads(str(data["meta"])), source=path)
    except (OSError, ValueError, KeyError):
        return None
    return meta if meta.fingerprint == fingerprint else None


def _case_meta(model: NnUNetModel, entry: dict, pre: PreprocessedCase, path: Path, fingerprint: str) -> CaseMeta:
    assert pre.label is not None
    slices = pre.data.shape[1] if len(model.patch_size) == 2 else None
    indices = list(range(slices)) if slices is not None else []
    ids = [sample_id(entry["case"], i) for i in indices] if slices is not None else [entry["case"]]
    norm = pre.normalization[0]
    scale = 1.0 / norm.source_per_unit if norm.source_per_unit else 1.0
    _, _, source_shape = grid_affines(pre.properties, list(model.plans_manager.transpose_forward), pre.data.shape[1:])
    files = _image_files(entry)
    return CaseMeta(
        case=entry["case"],
        image=files[0] if len(files) == 1 else tuple(files),
        label=entry["label"],
        file=f"{CASES_DIR}/{path.name}",
        fingerprint=fingerprint,
        source_shape=tuple(int(s) for s in source_shape),
        source_spacing=tuple(float(s) for s in reversed(pre.properties["spacing"])),
        shape=tuple(int(s) for s in pre.data.shape),
        source_dims=3,
        slice_axis=0 if slices is not None else None,
        slice_indices=tuple(indices),
        sample_ids=tuple(ids),
        max_label=int(pre.label.max(initial=0)),
        label_values=tuple(int(v) for v in np.unique(pre.label)),
        intensity_scale=scale,
        intensity_offset=-(norm.mean or 0.0) * scale if norm.source_per_unit else 0.0,
    )


def _write_case(model: NnUNetModel, entry: dict, path: Path, fingerprint: str) -> CaseMeta:
    try:
        pre = preprocess_case(model, _image_files(entry), entry["label"])
    except (RuntimeError, ValueError, OSError) as error:
        raise DataError(
            f"{_image_files(entry)[0]}: nnU-Net's preprocessing failed: {error}", [entry["label"]]
        ) from None
    meta = _case_meta(model, entry, pre, path, fingerprint)
    label = pre.label if pre.label is not None else np.zeros(pre.data.shape[1:], np.uint8)
    affine, source_affine, _ = grid_affines(
        pre.properties, list(model.plans_manager.transpose_forward), pre.data.shape[1:]
    )
    extra = {
        "properties": json.loads(properties_to_json(pre.properties)),
        "normalization": [n.to_json() for n in pre.normalization],
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(
            handle,
            image=pre.data,
            label=label,
            affine=affine,
            source_affine=source_affine,
            meta=np.array(json.dumps(meta.to_json())),
            nnunet=np.array(json.dumps(extra)),
        )
    return meta


def case_properties(cache_dir: str | os.PathLike[str], meta: CaseMeta) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """nnU-Net's properties of a cached case (for its export) and the normalisation of each channel."""
    with np.load(Path(cache_dir) / meta.file, allow_pickle=False) as data:
        extra = json.loads(str(data["nnunet"]))
    return properties_from_json(json.dumps(extra["properties"])), list(extra["normalization"])


def _manifest(model: NnUNetModel, data_dir, info, cases: list[CaseMeta], normalization: list[dict]) -> Manifest:
    groups = patient_groups([c.case for c in cases], PreprocessConfig().group_regex)
    cases = [c.in_split(groups[c.case], 0) for c in cases]
    names = model.class_names
    schemes = ", ".join(str(n["scheme"]) for n in normalization)
    config = {
        "nnunet": {
            "results": str(model.results.folder),
            "configuration": model.configuration,
            "patch_size": list(model.patch_size),
            "spacing": [float(s) for s in model.configuration_manager.spacing],
            "normalization_schemes": list(model.configuration_manager.normalization_schemes),
        },
        "intensity": f"nnU-Net {schemes}",
        "spatial_size": None,
    }
    return Manifest(
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        data_dir=str(Path(data_dir).resolve()),
        dataset=DatasetSource(info.name, info.layout, info.modality),
        modality=resolve_modality(PreprocessConfig(), info.modality),
        labels={k: names.get(k, f"class {k}") for k in range(model.num_classes)},
        num_classes=model.num_classes,
        class_values=tuple(range(model.num_classes)),
        in_channels=cases[0].shape[0],
        spatial_dims=len(model.patch_size),
        config=config,
        cases=tuple(cases),
        splits={0: FoldSplit((), (), tuple(sorted(c.case for c in cases)))},
        num_samples=sum(len(c.sample_ids) for c in cases),
    )


def preprocess_with_nnunet(
    model: NnUNetModel,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = False,
    allow_outside_paths: bool = False,
) -> Manifest:
    """Preprocess every labelled case of ``data_dir`` with ``model``'s nnU-Net preprocessing into the cache
    ``out_dir`` (cases reused while their files and the plans are unchanged); returns the manifest.

    Raises:
        DataError: unreadable data, or labels outside the model's classes.
        ValueError: ``out_dir`` inside ``data_dir``, or a channel count the model does not take.
    """
    refuse_output_in_input(out_dir, {"--data": data_dir}, output_flag="--run")
    out = Path(out_dir)
    (out / CASES_DIR).mkdir(parents=True, exist_ok=True)
    datalist, info = discover_with_info(data_dir, allow_outside_paths=allow_outside_paths)
    iterator: Any = datalist
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(datalist, desc="nnU-Net preprocessing", unit="case")
    cases: list[CaseMeta] = []
    reused = 0
    for entry in iterator:
        fingerprint = _fingerprint(model, entry)
        path = out / CASES_DIR / f"{entry['case']}.npz"
        meta = _read_meta(path, fingerprint)
        if meta is None:
            (out / MANIFEST_NAME).unlink(missing_ok=True)
            meta = _write_case(model, entry, path, fingerprint)
        else:
            reused += 1
        if meta.max_label >= model.num_classes:
            raise DataError(
                f"{entry['label']}: label values {list(meta.label_values)} exceed the model's classes "
                f"0..{model.num_classes - 1} ({model.results.folder / 'dataset.json'})",
                [entry["label"]],
            )
        cases.append(meta)
    _, normalization = case_properties(out, cases[0])
    manifest = _manifest(model, data_dir, info, cases, normalization)
    atomic_write_json(out / MANIFEST_NAME, manifest.to_json())
    logger.info(
        "%d case(s) preprocessed by nnU-Net (%s), %d reused, in %s",
        len(cases) - reused,
        model.results.describe(),
        reused,
        out,
    )
    return manifest
