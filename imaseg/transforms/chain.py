"""The preprocessing chain per modality, as MONAI dictionary transforms, and its configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monai.transforms import Compose, CropForegroundd, Orientationd, Spacingd

from imaseg.config import config_from_dict
from imaseg.transforms.intensity import INTENSITY_MODES, IntensityScalingd
from imaseg.transforms.io import LoadNiftid
from imaseg.transforms.spatial import FIT_MODES, FitToSized

__all__ = [
    "MODALITIES",
    "PreprocessConfig",
    "build_preprocessing",
    "hu_per_input_unit",
    "preprocessing_for_record",
    "resolve_intensity",
    "resolve_modality",
]

MODALITIES = ("auto", "mri", "ct", "xray", "other")
_MODALITY_ALIASES = {"mri": "mri", "mr": "mri", "ct": "ct", "x-ray": "xray", "xray": "xray", "cr": "xray", "dx": "xray"}
_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
_DEFAULT_GROUP_REGEX = r"^(.+?)(?:_frame\d+|_ED|_ES|_fixed|_moving)?$"


@dataclass(frozen=True)
class PreprocessConfig:
    """How a NIfTI folder becomes cached model inputs. Every field is also a ``imaseg preprocess`` flag."""

    modality: str = field(
        default="auto", metadata={"help": "mri, ct, xray or other; auto = dataset.json", "choices": MODALITIES}
    )
    intensity: str = field(
        default="auto",
        metadata={
            "help": "intensity scaling; auto = zscore (MRI), window (CT), range (X-ray)",
            "choices": ("auto", *INTENSITY_MODES),
        },
    )
    window: list[float] = field(
        default_factory=lambda: [-1000.0, 400.0],
        metadata={"help": "source range for window/range modes (CT: HU); write --window=-1000,400 for negative values"},
    )
    percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5], metadata={"help": "percentile mode bounds"})
    target_range: list[float] = field(
        default_factory=lambda: [0.0, 1.0], metadata={"help": "output range of window/range/percentile"}
    )
    orientation: str | None = field(default="RAS", metadata={"help": "reorient to these axis codes; none to keep"})
    spacing: list[float] | None = field(
        default=None, metadata={"help": "resample to this spacing in mm (<=0 keeps an axis); none = keep"}
    )
    crop_foreground: bool = field(default=False, metadata={"help": "crop to the image's non-background box"})
    mode: str = field(
        default="2d", metadata={"help": "2d: slice volumes into 2D samples; 3d: keep volumes", "choices": ("2d", "3d")}
    )
    slice_axis: int = field(
        default=2, metadata={"help": "spatial axis to slice along in 2d mode (after reorientation)"}
    )
    spatial_size: list[int] = field(
        default_factory=lambda: [128, 128], metadata={"help": "model input size (per fitted axis)"}
    )
    resize: str = field(default="pad-resize", metadata={"help": "how to reach spatial_size", "choices": FIT_MODES})
    keep_empty_slices: bool = field(default=True, metadata={"help": "keep 2D slices without foreground"})
    folds: int = field(default=5, metadata={"help": "number of patient-grouped folds"})
    val_groups: float = field(
        default=0.1, metadata={"help": "validation patients: a fraction (<1) or a count of the training groups"}
    )
    group_regex: str = field(
        default=_DEFAULT_GROUP_REGEX, metadata={"help": "regex whose group 1 is the patient of a case id"}
    )
    group_map: str | None = field(default=None, metadata={"help": "CSV 'case,group' overriding group_regex"})
    seed: int = field(default=0, metadata={"help": "seed of the fold assignment"})


def resolve_modality(config: PreprocessConfig, declared: str) -> str:
    """The modality to preprocess for: the config's, or the one the data set declares."""
    if config.modality != "auto":
        return config.modality
    return _MODALITY_ALIASES.get(declared.strip().lower(), "other")


def hu_per_input_unit(config: Mapping[str, Any], modality: str) -> float | None:
    """Hounsfield units per model-input unit of a CT cache made with preprocessing ``config`` (a manifest's
    ``config``), or ``None`` where the inputs are not CT numbers mapped linearly (other modalities, z-scores).

    >>> hu_per_input_unit({"intensity": "auto", "window": [-100.0, 400.0], "target_range": [0.0, 1.0]}, "ct")
    500.0
    >>> hu_per_input_unit({"intensity": "none"}, "ct"), hu_per_input_unit({"intensity": "zscore"}, "mri")
    (1.0, None)
    """
    if modality != "ct":
        return None
    mode = config.get("intensity", "auto")
    if mode == "none":
        return 1.0  # the inputs are the CT numbers
    if mode not in ("auto", "window", "range"):
        return None
    low, high = (float(v) for v in config.get("window") or (-1000.0, 400.0))
    target_low, target_high = (float(v) for v in config.get("target_range") or (0.0, 1.0))
    return (high - low) / (target_high - target_low)


def resolve_intensity(config: PreprocessConfig, modality: str) -> dict:
    """Keyword arguments of :class:`IntensityScaling` for this config and modality."""
    mode = config.intensity
    source_range = config.window
    if mode == "auto":
        mode = {"mri": "zscore", "ct": "window", "xray": "range"}.get(modality, "none")
        if mode == "range":
            source_range = [0.0, 255.0]
    return {
        "mode": mode,
        "source_range": source_range,
        "target_range": config.target_range,
        "percentiles": config.percentiles,
    }


def build_preprocessing(config: PreprocessConfig, modality: str, spatial_dims: int, *, label: bool = True) -> Compose:
    """The chain for one case: load -> orient -> (resample) -> (crop) -> intensity -> fit to size.

    Args:
        config: the preprocessing settings.
        modality: resolved modality (:func:`resolve_modality`).
        spatial_dims: 2 for 2D images (X-ray), 3 for volumes.
        label: the cases have a ``"label"`` key (``False`` for images to segment, ``imaseg predict``).
    """
    keys = ["image", "label"] if label else ["image"]
    steps: list = [LoadNiftid(keys)]
    if config.orientation:
        steps.append(Orientationd(keys, axcodes=config.orientation[:spatial_dims], labels=_RAS_LABELS))
    if config.spacing:
        modes = ("bilinear", "nearest")[: len(keys)]
        steps.append(Spacingd(keys, pixdim=config.spacing[:spatial_dims], mode=modes))
    if config.crop_foreground:
        steps.append(CropForegroundd(keys, source_key="image", select_fn=_above_minimum, allow_smaller=True))
    steps.append(IntensityScalingd(["image"], **resolve_intensity(config, modality)))
    keep_axis = config.slice_axis if (config.mode == "2d" and spatial_dims == 3) else None
    if config.spatial_size:
        steps.append(FitToSized(keys, config.spatial_size, config.resize, keep_axis=keep_axis))
    return Compose(steps)


def preprocessing_for_record(record: dict, *, label: bool = False) -> Compose:
    """The chain a run's ``preprocessing.json`` describes, for images like its training data (what bundles
    exported by ``imaseg export`` instantiate through MONAI's ``ConfigParser``)."""
    config = config_from_dict(PreprocessConfig, record["config"])
    dims = int(record.get("source_dims", record.get("spatial_dims", 3)))
    return build_preprocessing(config, str(record.get("modality", "other")), dims, label=label)


def _above_minimum(image):  # module-level so the chain stays picklable
    return image > image.min()
