"""One case preprocessed exactly as nnU-Net's inference does, plus what its normalisation means in source units.

nnU-Net's ``nnUNetPredictor`` reads a case with the plans' reader and runs the configuration's
preprocessor (``DefaultPreprocessor.run_case``: transpose, crop to the non-zero region, normalise per
channel with the plans' scheme, resample to the target spacing) without a segmentation; this module runs
the same ``run_case_npy`` on the same arrays, so the data equal the predictor's. The label is preprocessed
by a second call with the segmentation (nnU-Net's training path: -1 outside the non-zero crop, mapped to
background here), so the image stays exactly what inference sees.

Attacks run on the preprocessed data; :class:`ChannelNormalization` says how many source intensity units
one preprocessed unit is (``ZScoreNormalization``: the case's standard deviation in the cropped image;
``CTNormalization``: the data set's foreground standard deviation, zero gradient where it clips), so a
budget ``eps`` in model units is ``eps * source_per_unit`` in source units.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from imaseg.nnunet.model import NnUNetModel

__all__ = ["ChannelNormalization", "PreprocessedCase", "preprocess_case", "properties_from_json", "properties_to_json"]


@dataclass(frozen=True)
class ChannelNormalization:
    """How one channel was normalised: ``model = (source - mean) / source_per_unit`` (then clipped for CT).

    ``source_per_unit`` is ``None`` for a scheme imaseg does not know (budgets then stay in model units).
    """

    scheme: str
    source_per_unit: float | None
    mean: float | None = None
    clip: tuple[float, float] | None = None  # source units (CTNormalization)
    use_mask: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "source_per_unit": self.source_per_unit,
            "mean": self.mean,
            "clip": list(self.clip) if self.clip else None,
            "use_mask_for_norm": self.use_mask,
        }


@dataclass
class PreprocessedCase:
    """``data (C, *spatial)`` float32 as nnU-Net's predictor sees it; ``label (*spatial)`` (uint8, ``None``
    without a label file); nnU-Net's ``properties`` (for its export); the normalisation of each channel."""

    data: np.ndarray
    label: np.ndarray | None
    properties: dict[str, Any]
    normalization: list[ChannelNormalization]


def _channel_normalization(model: NnUNetModel, cropped: np.ndarray, mask: np.ndarray, c: int) -> ChannelNormalization:
    """The scheme of channel ``c`` and its scale, computed as nnU-Net's normaliser computes it."""
    cm = model.configuration_manager
    scheme = str(cm.normalization_schemes[c])
    use_mask = bool(cm.use_mask_for_norm[c]) if c < len(cm.use_mask_for_norm) else False
    image = cropped[c]
    if scheme == "ZScoreNormalization":
        values = image[mask >= 0] if use_mask else image
        return ChannelNormalization(scheme, float(max(values.std(), 1e-8)), float(values.mean()), use_mask=use_mask)
    if scheme == "CTNormalization":
        stats = model.plans_manager.foreground_intensity_properties_per_channel[str(c)]
        clip = (float(stats["percentile_00_5"]), float(stats["percentile_99_5"]))
        return ChannelNormalization(scheme, float(max(stats["std"], 1e-8)), float(stats["mean"]), clip)
    if scheme == "RescaleTo01Normalization":
        return ChannelNormalization(scheme, float(max(image.max() - image.min(), 1e-8)), float(image.min()))
    if scheme == "RGBTo01Normalization":
        return ChannelNormalization(scheme, 255.0, 0.0)
    if scheme == "NoNormalization":
        return ChannelNormalization(scheme, 1.0, 0.0)
    return ChannelNormalization(scheme, None)


def _normalizations(model: NnUNetModel, raw: np.ndarray) -> list[ChannelNormalization]:
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero

    transposed = raw.astype(np.float32).transpose([0, *[i + 1 for i in model.plans_manager.transpose_forward]])
    cropped, mask, _ = crop_to_nonzero(transposed, None)  # mask: 0 inside the non-zero region, -1 outside
    return [_channel_normalization(model, cropped, mask[0], c) for c in range(cropped.shape[0])]


def preprocess_case(model: NnUNetModel, image_files: list[str], label_file: str | None = None) -> PreprocessedCase:
    """Read and preprocess one case (one file per channel, nnU-Net's channel order) as nnU-Net's inference does.

    Raises:
        ValueError: the number of image files is not the model's channel count.
    """
    pm, cm = model.plans_manager, model.configuration_manager
    channels = len(model.results.dataset_json.get("channel_names", model.results.dataset_json.get("modality", {})))
    if channels and len(image_files) != channels:
        raise ValueError(
            f"{image_files[0]}: the model takes {channels} channel(s) ({model.results.folder / 'dataset.json'}), the "
            f"case has {len(image_files)} image file(s)"
        )
    reader = pm.image_reader_writer_class()
    raw, properties = reader.read_images([str(f) for f in image_files])
    preprocessor = cm.preprocessor_class(verbose=False)
    dataset_json = model.results.dataset_json
    data, _, properties = preprocessor.run_case_npy(raw, None, copy.deepcopy(properties), pm, cm, dataset_json)
    label = None
    if label_file is not None:
        seg_raw, _ = reader.read_seg(str(label_file))
        _, seg, _ = preprocessor.run_case_npy(raw, seg_raw, copy.deepcopy(properties), pm, cm, dataset_json)
        label = np.clip(np.asarray(seg[0]), 0, None)
        label = label.astype(np.uint8 if label.max(initial=0) <= 255 else np.int32)
    return PreprocessedCase(np.asarray(data, np.float32), label, properties, _normalizations(model, raw))


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def properties_to_json(properties: dict[str, Any]) -> str:
    """nnU-Net's case properties (spacing, crop box, reader geometry) as JSON, arrays tagged, not pickled."""
    return json.dumps(_encode({k: v for k, v in properties.items() if k != "class_locations"}))


def properties_from_json(text: str) -> dict[str, Any]:
    """Inverse of :func:`properties_to_json` (lists stay lists, arrays come back as arrays)."""
    return dict(_decode(json.loads(text)))
