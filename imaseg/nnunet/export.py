"""Predictions back to the source image's geometry with nnU-Net's own export, and nnU-Net's own prediction.

``convert_predicted_logits_to_segmentation_with_correct_shape`` resamples logits to the cropped source
grid (linear), takes the argmax, puts the crop back into the full image and undoes the transpose; the
plans' reader writes the file with the source's spacing, origin and direction. :func:`reference_logits`
is nnU-Net's own sliding window (``nnUNetPredictor.predict_logits_from_preprocessed_data``, float16
accumulation, no gradient): logits -> :func:`logits_to_source` -> :func:`write_segmentation` is what
``nnUNetv2_predict`` writes, voxel for voxel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imaseg.nnunet.model import NnUNetModel

__all__ = ["classes_to_source", "logits_to_source", "read_source_label", "reference_logits", "write_segmentation"]


def reference_logits(model: NnUNetModel, data: np.ndarray, *, tta: bool = True, step: float = 0.5) -> torch.Tensor:
    """nnU-Net's own logits ``(K, *spatial)`` for a preprocessed case ``(C, *spatial)`` (its predictor)."""
    predictor = model.predictor(tta=tta, step=step)
    with torch.no_grad():
        return predictor.predict_logits_from_preprocessed_data(torch.from_numpy(np.asarray(data))).float().cpu()


def logits_to_source(model: NnUNetModel, logits: torch.Tensor | np.ndarray, properties: dict[str, Any]) -> np.ndarray:
    """Logits ``(K, *spatial)`` on the preprocessed grid -> the class map in the source image's array order."""
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    seg = convert_predicted_logits_to_segmentation_with_correct_shape(
        logits,
        model.plans_manager,
        model.configuration_manager,
        model.label_manager,
        properties,
        return_probabilities=False,
        num_threads_torch=torch.get_num_threads(),  # nnU-Net's default would raise the thread count
    )
    return np.asarray(seg)


def classes_to_source(model: NnUNetModel, classes: np.ndarray, properties: dict[str, Any]) -> np.ndarray:
    """A class map on the preprocessed grid (e.g. an attacked prediction) -> the source grid, through nnU-Net's
    export of its one-hot encoding (identical to the input where the plans do not resample)."""
    one_hot = np.eye(model.num_classes, dtype=np.float32)[np.asarray(classes, dtype=np.int64)]
    return logits_to_source(model, torch.from_numpy(np.moveaxis(one_hot, -1, 0).copy()), properties)


def write_segmentation(
    model: NnUNetModel, segmentation: np.ndarray, properties: dict[str, Any], path: str | os.PathLike[str]
) -> Path:
    """Write a source-grid class map with the plans' reader/writer (``path`` without the file ending, as nnU-Net
    names outputs); returns the file written."""
    target = Path(f"{path}{model.results.dataset_json.get('file_ending', '.nii.gz')}")
    target.parent.mkdir(parents=True, exist_ok=True)
    model.plans_manager.image_reader_writer_class().write_seg(segmentation, str(target), properties)
    return target


def read_source_label(model: NnUNetModel, path: str | os.PathLike[str]) -> np.ndarray:
    """A label file in the source array order nnU-Net's export uses (its reader, channel dropped)."""
    seg, _ = model.plans_manager.image_reader_writer_class().read_seg(str(path))
    return np.asarray(seg[0])
