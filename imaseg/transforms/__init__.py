"""MONAI dictionary transforms: loading with true spacing, intensity per modality, fitting to size."""

from imaseg.transforms.chain import PreprocessConfig, build_preprocessing, resolve_intensity, resolve_modality
from imaseg.transforms.intensity import IntensityScaling, IntensityScalingd
from imaseg.transforms.io import LoadNifti, LoadNiftid
from imaseg.transforms.spatial import FitToSize, FitToSized

__all__ = [
    "FitToSize",
    "FitToSized",
    "IntensityScaling",
    "IntensityScalingd",
    "LoadNifti",
    "LoadNiftid",
    "PreprocessConfig",
    "build_preprocessing",
    "resolve_intensity",
    "resolve_modality",
]
