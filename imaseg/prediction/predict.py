"""``imaseg predict``: preprocess new images exactly as a run's training data, segment, map back.

For every input case, written to the output folder:

- ``CASE.nii.gz``: the label map in the source geometry (the input's shape and affine), with the data
  set's label values (after ``postprocess``, e.g. ``lcc``, on the model's grid, as an exported bundle does);
- ``CASE_flip_radius.nii.gz`` (with ``robustness_map``): per voxel, the perturbation norm at which its
  class flipped along the attack path (an upper bound; see :class:`PredictConfig`);

and for all cases ``volumes.csv`` / ``volumes.json`` (structure volumes in mL, areas in cm² for 2D
images, measured on the source grid) and ``predict.json`` (run, checkpoint, settings). A rerun with the
same run and settings skips the cases already written; other settings need ``overwrite``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from imaseg.attacks import AttackSettings, parse_attack_name
from imaseg.cache.case_meta import CaseMeta
from imaseg.cache.manifest import label_values
from imaseg.cache.reader import CachedCase
from imaseg.config import to_dict
from imaseg.data.errors import DataError
from imaseg.data.nifti import write_nifti
from imaseg.evaluation.cells import CaseSettings, Cell, attack_case
from imaseg.evaluation.endpoints import structure_sizes
from imaseg.evaluation.geometry import to_source_grid
from imaseg.inference import InferenceLayout, segment
from imaseg.networks import resolve_device
from imaseg.postprocess import check_postprocess, postprocess
from imaseg.prediction.config import PredictConfig
from imaseg.prediction.inputs import find_images
from imaseg.run_model import RunModel, load_run_model
from imaseg.transforms.chain import build_preprocessing
from imaseg.transforms.io import LoadNifti
from imaseg.utils.atomic import atomic_write_json, atomic_write_text
from imaseg.utils.paths import refuse_output_in_input

__all__ = ["RunModel", "load_run_model", "predict"]  # RunModel and its loader live in imaseg.run_model

logger = logging.getLogger(__name__)


def predict(
    run_dir: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: PredictConfig | None = None,
    *,
    progress: bool = True,
) -> dict:
    """Segment every image under ``input_path`` with the run; returns ``{case: {structure: size}}``.

    Raises:
        DataError: unreadable or unfit input (naming the file), or a run without its preprocessing.
        ValueError: bad settings, ``out_dir`` is (or is inside) the input folder, or ``out_dir`` holds outputs of
            other settings without ``overwrite``.
    """
    config = config or PredictConfig()
    _check_config(config)
    check_postprocess(config.postprocess)  # a missing package is named before any model is loaded
    refuse_output_in_input(out_dir, {"--input": input_path}, output_flag="--output")  # never over the images
    entries = find_images(input_path)
    device = resolve_device(config.device)
    model = load_run_model(run_dir, config.checkpoint, str(device))
    out = Path(out_dir)
    _claim_output(out, model, config)
    sizes_path = out / "volumes.json"
    sizes: dict = json.loads(sizes_path.read_text()) if sizes_path.is_file() else {}
    iterator = entries
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(entries, desc="predicting", unit="case")
    for entry in iterator:
        if entry["case"] in sizes and (out / f"{entry['case']}.nii.gz").is_file():
            continue  # done by an earlier call with the same settings
        sizes[entry["case"]] = _predict_entry(model, entry, out, config, device)
        atomic_write_json(sizes_path, sizes)
    _write_sizes_csv(out / "volumes.csv", sizes)
    logger.info("wrote %d label maps and %s to %s", len(entries), sizes_path.name, out)
    return sizes


def _check_config(config: PredictConfig) -> None:
    if config.robustness_map is not None:
        if config.robustness_map <= 0:
            raise ValueError(f"`robustness_map` must be > 0, got {config.robustness_map}")
        spec, norm = parse_attack_name(config.attack)
        if not spec.records_flips or norm != "l2":
            raise ValueError(f"`attack` must be an L2 attack that records flips (e.g. pgd-l2), got {config.attack!r}")
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError(f"`steps` and `batch_size` must be >= 1, got {config.steps} and {config.batch_size}")


def _claim_output(out: Path, model: RunModel, config: PredictConfig) -> None:
    """``predict.json`` says which run and settings wrote the folder; other settings are refused."""
    ignored = {"device", "overwrite"} | ({"postprocess"} if config.postprocess == "none" else set())
    stamp = {  # postprocess none is left out: folders written before the setting existed stay valid
        "run": str(model.run_dir.resolve()),
        "checkpoint": str(model.checkpoint.resolve()),
        "settings": {k: v for k, v in to_dict(config).items() if k not in ignored},
    }
    path = out / "predict.json"
    if path.is_file() and json.loads(path.read_text()) != stamp:
        if not config.overwrite:
            raise ValueError(
                f"{out} holds predictions of another run or other settings ({path}); choose another --output "
                "or pass --overwrite"
            )
        (out / "volumes.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, stamp)


def _preprocess(model: RunModel, entry: dict) -> tuple[MetaTensor, dict]:
    """Load (with the named-file checks of ``imaseg check``) and run the training data's chain after loading."""
    pre, record = model.preprocess, model.preprocessing_record
    first = entry["image"][0] if isinstance(entry["image"], list) else entry["image"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's channel-first hints on 2D images
        loaded = LoadNifti()(entry["image"])
        dims = loaded.ndim - 1
        chain = build_preprocessing(pre, record.modality, dims, label=False)
        try:
            image = Compose(chain.transforms[1:])({"image": loaded})["image"]  # [0] is the loader
        except (RuntimeError, ValueError) as error:
            raise DataError(f"{first}: preprocessing failed: {error}", [first]) from error
    if image.shape[0] != record.in_channels:
        raise DataError(
            f"{first}: {image.shape[0]} channel(s), but the run was trained on {record.in_channels}; give one "
            "file per channel (nnU-Net CASE_0000, CASE_0001...)",
            [first],
        )
    return image, image.meta


def _predict_entry(model: RunModel, entry: dict, out: Path, config: PredictConfig, device: torch.device) -> dict:
    image, meta = _preprocess(model, entry)
    source_dims = len(meta["source_shape"])
    pre = model.preprocess
    slice_axis = pre.slice_axis if (pre.mode == "2d" and source_dims == 3) else None
    if slice_axis is None and source_dims != model.preprocessing_record.spatial_dims:
        raise DataError(
            f"{meta['filename_or_obj']}: a {source_dims}D image, but the run segments {model.preprocessing_record.spatial_dims}D "
            "inputs; give images like the training data",
            [meta["filename_or_obj"]],
        )
    affine = np.asarray(torch.as_tensor(image.affine), dtype=np.float64)
    array = image.as_tensor().numpy().astype(np.float32)
    window = model.patch_size or pre.spatial_size  # a patch-trained network slides a window of its patch
    roi = tuple(window) if slice_axis is None and source_dims == 3 and window else None
    classes = segment(model.network, array, InferenceLayout(slice_axis, roi, config.batch_size), device)
    source = meta["source_affine"], meta["source_shape"]
    on_source = to_source_grid(postprocess(classes, config.postprocess), affine, *source, order=0)
    values = label_values(on_source, model.preprocessing_record.class_values)
    write_nifti(out / f"{entry['case']}.nii.gz", values, source[0])
    if config.robustness_map is not None:
        radius = _flip_radius(
            model,
            config,
            CachedCase(
                entry["case"],
                array,
                classes,
                affine,
                meta["source_affine"],
                CaseMeta(entry["case"], slice_axis=slice_axis),
            ),
            roi,
            device,
        )
        mapped = to_source_grid(radius, affine, *source, order=0, fill=config.robustness_map)
        write_nifti(out / f"{entry['case']}_flip_radius.nii.gz", mapped.astype(np.float32), source[0])
    spatial = on_source.ndim
    sizes = structure_sizes(on_source, np.asarray(source[0]), model.num_classes)
    names = model.names
    unit = "mL" if spatial == 3 else "cm2"
    return {"unit": unit, **{names.get(i, f"class {i}"): size for i, size in enumerate(sizes, start=1)}}


def _flip_radius(model: RunModel, config: PredictConfig, case: CachedCase, roi, device: torch.device) -> np.ndarray:
    """Per voxel, the norm at which the prediction's class flipped along the attack path: the case's label is
    the prediction itself (robustness of what the model says, no ground truth needed)."""
    budget = float(config.robustness_map or 0.0)
    attack = AttackSettings(steps=config.steps, clip_range=model.clip_range, seed=config.seed)
    cell = Cell(config.attack.lower(), budget)
    settings = CaseSettings(attack, config.batch_size, roi)
    radius = attack_case(model.network, case, cell, settings, device, record_flips=True).flip_radius
    if radius is None:
        raise RuntimeError(f"{config.attack} recorded no flip radii")
    return np.minimum(radius, budget).astype(np.float32)  # never flipped: the budget


def _write_sizes_csv(path: Path, sizes: dict) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case", "structure", "size", "unit"])
    for case, entry in sorted(sizes.items()):
        for name, value in entry.items():
            if name != "unit":
                writer.writerow([case, name, f"{value:.6g}", entry["unit"]])
    atomic_write_text(path, buffer.getvalue())
