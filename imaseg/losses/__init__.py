"""Training losses: per-sample segmentation losses, IMA (sample- and voxel-level), its settings and its margin bank."""

from imaseg.losses.ima import MARGIN_MODES, IMALoss
from imaseg.losses.ima_config import IMAConfig
from imaseg.losses.margins import MarginBank
from imaseg.losses.voxel_stats import VoxelMarginStats, class_boundary

__all__ = [
    "MARGIN_MODES",
    "IMAConfig",
    "IMALoss",
    "MarginBank",
    "VoxelMarginStats",
    "class_boundary",
]
