"""A trained nnU-Net v2 model: the network built from the plans, one fold's weights, nnU-Net's own managers.

The network is built as nnU-Net's default trainer builds it (``get_network_from_plans`` with the plans'
architecture class and keyword arguments, deep supervision off), without looking the trainer class up by
name: that lookup imports every trainer module of nnunetv2, and the transformer ones need timm, which a
CPU install lacks. Trainers that override ``build_network_architecture`` therefore do not load (their
weights do not fit the plans' network, and the error says so).

Checkpoints are loaded with ``weights_only=True`` and an allow-list of the few objects nnU-Net stores
besides tensors (``torch.device``, NumPy scalars and dtypes); the plans may only name network classes of
``dynamic_network_architectures`` and modules of ``torch.nn`` unless ``trust_code`` is given, since
nnU-Net resolves those names with ``pydoc.locate``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from imaseg.data.errors import DataError
from imaseg.nnunet.requirement import require_nnunet
from imaseg.nnunet.results import NnUNetResults, open_results
from imaseg.nnunet.window import NnUNetSlidingWindow

__all__ = ["NnUNetModel", "load_checkpoint", "load_model"]

logger = logging.getLogger(__name__)

_TRUSTED_PREFIXES = ("dynamic_network_architectures.", "torch.nn.")


@dataclass
class NnUNetModel:
    """One fold of a trained nnU-Net model, ready for imaseg's attacks and nnU-Net's own inference."""

    results: NnUNetResults
    network: nn.Module  # deep supervision off, eval mode
    plans_manager: Any
    configuration_manager: Any
    label_manager: Any
    weights: dict[str, torch.Tensor]
    trainer_name: str
    configuration: str
    mirror_axes: tuple[int, ...] | None  # the checkpoint's inference_allowed_mirroring_axes
    epoch: int = 0

    @property
    def patch_size(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.configuration_manager.patch_size)

    @property
    def num_classes(self) -> int:
        """Logit channels, background included."""
        return int(self.label_manager.num_segmentation_heads)

    @property
    def class_names(self) -> dict[int, str]:
        """Label value -> name, from the folder's ``dataset.json``."""
        labels = self.results.dataset_json.get("labels", {})
        return {int(v): str(k) for k, v in labels.items() if isinstance(v, int)}

    def forward_module(self, *, tta: bool = True, step: float = 0.5) -> NnUNetSlidingWindow:
        """The differentiable forward attacks go through: nnU-Net's tiles, Gaussian weights and (with ``tta``) its
        mirroring, in float32."""
        axes = self.mirror_axes if tta else None
        if tta and not self.mirror_axes:
            logger.info("%s: the checkpoint allows no mirroring: no test-time augmentation", self.results.checkpoint)
        return NnUNetSlidingWindow(self.network, self.patch_size, step=step, mirror_axes=axes).eval()

    def predictor(self, *, tta: bool = True, step: float = 0.5) -> Any:
        """nnU-Net's own ``nnUNetPredictor`` for this fold (the reference imaseg's clean predictions are checked
        against; ``nnUNetv2_predict`` uses the same class)."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        device = next(self.network.parameters()).device
        # nnU-Net prints "perform_everything_on_device=True is only supported for cuda devices!" on every CPU
        # construction, whatever the flag says; it says nothing here, so it is kept off the user's terminal.
        with contextlib.redirect_stdout(io.StringIO()):
            predictor = nnUNetPredictor(
                tile_step_size=step,
                use_gaussian=True,
                use_mirroring=tta,
                perform_everything_on_device=device.type == "cuda",
                device=device,
                verbose=False,
                allow_tqdm=False,
            )
        predictor.manual_initialization(
            self.network,
            self.plans_manager,
            self.configuration_manager,
            [self.weights],
            self.results.dataset_json,
            self.trainer_name,
            self.mirror_axes,
        )
        return predictor


def _safe_globals() -> list[Any]:
    """What nnU-Net checkpoints hold besides tensors and containers (NumPy 1 and 2 spellings of scalars)."""
    scalar = np._core.multiarray.scalar  # type: ignore[attr-defined]
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [torch.device, np.dtype, scalar, (scalar, "numpy.core.multiarray.scalar"), *dtypes]


def load_checkpoint(path: str | os.PathLike[str], trust_code: bool = False) -> dict[str, Any]:
    """An nnU-Net v2 checkpoint's contents, read with the safe loader unless ``trust_code``.

    Raises:
        DataError: unreadable, not an nnU-Net checkpoint, or (without ``trust_code``) holding objects that can
            run code when loaded.
    """
    try:
        if trust_code:
            state = torch.load(path, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(_safe_globals()):
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = str(error).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        raise DataError(
            f"{path}: refusing to load: the checkpoint holds objects other than tensors, NumPy scalars and plain "
            f"containers ({detail}), which can run code when loaded; load it with trust_code=True only if you trust "
            "where it comes from",
            [path],
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise DataError(
            f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})", [path]
        ) from None
    if not isinstance(state, dict) or "network_weights" not in state or "init_args" not in state:
        raise DataError(f"{path}: not an nnU-Net v2 checkpoint (no network_weights / init_args)", [path])
    return state


def _check_names(configuration_manager: Any, source: os.PathLike[str]) -> None:
    names = [configuration_manager.network_arch_class_name]
    kwargs = configuration_manager.network_arch_init_kwargs
    names += [kwargs[k] for k in configuration_manager.network_arch_init_kwargs_req_import if kwargs.get(k)]
    foreign = [str(n) for n in names if not str(n).startswith(_TRUSTED_PREFIXES)]
    if foreign:
        raise DataError(
            f"{source}: the plans name {foreign}, outside dynamic_network_architectures and torch.nn; nnU-Net imports "
            "such names when it builds the network: load it with trust_code=True only if you trust the plans",
            [source],
        )


def _build_network(cm: Any, n_in: int, n_out: int) -> nn.Module:
    """The network as nnU-Net's default trainer builds it, deep supervision off."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(
        cm.network_arch_class_name,
        cm.network_arch_init_kwargs,
        cm.network_arch_init_kwargs_req_import,
        n_in,
        n_out,
        allow_init=False,
        deep_supervision=False,
    )


def load_model(
    results: NnUNetResults | str | os.PathLike[str],
    fold: str | int | None = None,
    checkpoint: str = "final",
    device: torch.device | str = "cpu",
    *,
    trust_code: bool = False,
) -> NnUNetModel:
    """One fold of an nnU-Net v2 results folder as an :class:`NnUNetModel` (network in eval mode on ``device``).

    Raises:
        NnUNetMissingError: nnunetv2 is not installed (naming the install command).
        DataError: missing files, a checkpoint that is not nnU-Net's or holds code, region-based labels, weights
            that do not fit the plans' network.
    """
    require_nnunet()
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    if not isinstance(results, NnUNetResults):
        results = open_results(results, fold, checkpoint)
    state = load_checkpoint(results.checkpoint, trust_code)
    plans_manager = PlansManager(results.plans)
    configuration = str(state["init_args"]["configuration"])
    cm = plans_manager.get_configuration(configuration)
    if getattr(cm, "previous_stage_name", None):
        raise DataError(
            f"{results.folder / 'plans.json'}: configuration {configuration!r} is a cascade stage (it needs the "
            f"{cm.previous_stage_name!r} segmentation as input); score the stages' own configurations instead",
            [results.folder / "plans.json"],
        )
    if not trust_code:
        _check_names(cm, results.folder / "plans.json")
    label_manager = plans_manager.get_label_manager(results.dataset_json)
    if label_manager.has_regions:
        raise DataError(
            f"{results.folder / 'dataset.json'}: region-based labels (overlapping regions, sigmoid outputs); imaseg "
            "scores one class per voxel",
            [results.folder / "dataset.json"],
        )
    n_in = determine_num_input_channels(plans_manager, cm, results.dataset_json)
    network = _build_network(cm, n_in, label_manager.num_segmentation_heads)
    try:
        network.load_state_dict(state["network_weights"])
    except RuntimeError as error:
        raise DataError(
            f"{results.checkpoint}: the weights do not fit the plans' {cm.network_arch_class_name} (trainer "
            f"{state.get('trainer_name')} may build its own architecture, which imaseg does not look up): "
            f"{str(error).splitlines()[0]}",
            [results.checkpoint],
        ) from None
    network.to(device).eval()
    axes = state.get("inference_allowed_mirroring_axes")
    return NnUNetModel(
        results,
        network,
        plans_manager,
        cm,
        label_manager,
        state["network_weights"],
        str(state.get("trainer_name", "nnUNetTrainer")),
        configuration,
        tuple(int(a) for a in axes) if axes else None,
        int(state.get("current_epoch", 0)),
    )
