"""Score a trained nnU-Net v2 model with imaseg (``imaseg evaluate --nnunet RESULTS_FOLDER``).

Nothing here imports nnunetv2 until a model is used, so ``import imaseg`` never needs it; without it the
first use raises :class:`NnUNetMissingError` naming the install command (README, "nnU-Net").
"""

from imaseg.nnunet.model import NnUNetModel, load_model
from imaseg.nnunet.requirement import INSTALL, NNUNET_VERSION, NnUNetMissingError, nnunet_available, require_nnunet
from imaseg.nnunet.results import NnUNetResults, checkpoint_name, default_fold, is_results_folder, open_results
from imaseg.nnunet.window import NnUNetSlidingWindow, mirror_combinations

__all__ = [
    "INSTALL",
    "NNUNET_VERSION",
    "NnUNetMissingError",
    "NnUNetModel",
    "NnUNetResults",
    "NnUNetSlidingWindow",
    "checkpoint_name",
    "default_fold",
    "is_results_folder",
    "load_model",
    "mirror_combinations",
    "nnunet_available",
    "open_results",
    "require_nnunet",
]
