"""The training-method registry and the small protocol every method implements.

A method turns one batch into a loss; the trainer owns everything else (model, optimiser, schedule,
precision, data order), so comparisons between methods are fair. The trainer talks to a method only
through the hooks of :class:`Method`, and the CLI, the pipelines and the run folder read the registry,
so nothing outside this package compares method names. Adding a method is one new module in
``imaseg/training/methods/`` holding a :class:`Method` subclass decorated with :func:`register_method`
(every module of the package is imported on first use of the registry).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

import torch
from torch import nn

from imaseg.utils.checks import check_choice
from imaseg.utils.plugins import import_submodules

if TYPE_CHECKING:
    from imaseg.training.config import TrainConfig

__all__ = [
    "METHODS",
    "LossLogs",
    "Method",
    "autocast_dtype",
    "build_method",
    "describe_method",
    "has_batch_norm",
    "method_class",
    "method_names",
    "register_method",
]

METHODS: dict[str, type[Method]] = {}

LossLogs: TypeAlias = dict[str, torch.Tensor | float]
"""What a method logs per batch: detached 0-dim tensors (read with ``float()`` after the optimiser step, so
the step never waits for the device) or plain numbers."""


def autocast_dtype(config: TrainConfig) -> torch.dtype | None:
    """The mixed-precision dtype of the run, or ``None`` without ``amp``."""
    if not config.amp:
        return None
    return torch.float16 if config.amp_dtype == "fp16" else torch.bfloat16


def has_batch_norm(network: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())


class Method(nn.Module):
    """Base of every training method.

    :meth:`loss` is the one required hook; the others have do-nothing defaults. Buffers of a method (IMA's margins) are part of its
    ``state_dict`` and so of every checkpoint.

    Class attributes:
        name: the registered name (set by :func:`register_method`).
        order: position in listings (``--help``, pipelines): baselines first.
        adversarial: it attacks the model inside training (needs a network without batch norm under DDP).
        run_files: files the method writes into the run folder (cleared by ``train --overwrite``).
        needs_sample_ids: it keeps state per training sample (IMA's margins), so callers outside the
            trainer must name every sample (``imaseg.monai.RobustIteration``'s ``sample_ids``).
    """

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100
    adversarial: ClassVar[bool] = False
    run_files: ClassVar[tuple[str, ...]] = ()
    needs_sample_ids: ClassVar[bool] = False  # per-sample state (IMA's margins) keyed by stable sample ids
    citation: ClassVar[str] = ""

    def __init__(self, config: TrainConfig, joint_forward: bool, sample_ids: Sequence[str], num_classes: int) -> None:
        super().__init__()
        self.config = config
        self.joint_forward = joint_forward
        self.autocast = autocast_dtype(config)

    # ---- what the report shows (computed from the config alone) -----------------------------------
    @classmethod
    def label(cls, config: TrainConfig) -> str:
        """Short name in tables and legends."""
        return cls.name.upper()

    @classmethod
    def settings_text(cls, config: TrainConfig) -> str:
        """The method's own hyper-parameters in a few words."""
        return ""

    # ---- hooks the trainer calls ------------------------------------------------------------------
    def loss(
        self,
        model: nn.Module,
        network: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        index: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, LossLogs]:
        """The training loss of one batch and what to log of it.

        Args:
            model: what builds the loss graph (the network, compiled and / or wrapped by DDP).
            network: what inner attacks forward (the bare network, or its compiled form).
            images: ``(B, C, *spatial)`` model inputs.
            labels: ``(B, *spatial)`` class indices.
            index: ``(B,)`` positions of the samples among the training samples (host tensor).
            generator: the batch's seeded generator for attack starts.
        """
        raise NotImplementedError

    def end_epoch(self) -> dict[str, float]:
        """After the last batch of an epoch, on every rank: extra log fields (e.g. margin statistics)."""
        return {}

    def resume(self, run: Path, epoch: int) -> None:
        """Before training resumes at ``epoch`` (0: a fresh run) from ``run``."""

    def write_epoch(self, run: Path, epoch: int, class_names: dict[int, str]) -> None:
        """After ``epoch`` is logged, on the main rank: the method's own run files."""

    def reset_epoch(self) -> None:
        """After an epoch is written, on every rank: clear per-epoch accumulators."""

    def statistics(self) -> dict[str, float]:
        """Final statistics returned by ``train`` (IMA: margins)."""
        return {}

    # ---- helpers -------------------------------------------------------------------------------------
    @property
    def clip_range(self) -> tuple[float, float] | None:
        """The valid input range of every attack (checked once, by the config)."""
        return self.config.clip_range

    def forward_pair(
        self, model: nn.Module, clean: torch.Tensor, adversarial: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float logits of the clean and the adversarial batch (one forward when ``joint_forward``)."""
        if self.joint_forward:
            clean_logits, adv_logits = model(torch.cat([clean, adversarial])).float().chunk(2)
            return clean_logits, adv_logits
        return model(clean).float(), model(adversarial).float()


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a :class:`Method` to :data:`METHODS` under ``name``."""

    def decorate(cls: type[Method]) -> type[Method]:
        if name in METHODS and METHODS[name] is not cls:
            raise ValueError(f"training method {name!r} is registered twice")
        cls.name = name
        METHODS[name] = cls
        return cls

    return decorate


def method_names() -> tuple[str, ...]:
    """Every registered method, baselines first (by :attr:`Method.order`, then name)."""
    import_submodules("imaseg.training.methods")
    return tuple(sorted(METHODS, key=lambda name: (METHODS[name].order, name)))


def method_class(name: str) -> type[Method]:
    """The class of method ``name``; raises listing the valid names."""
    import_submodules("imaseg.training.methods")
    return METHODS[check_choice("method", name, method_names())]


def build_method(config: TrainConfig, network: nn.Module, sample_ids: Sequence[str], num_classes: int) -> Method:
    """The method named by ``config.method``, for ``network`` and these training samples."""
    cls = method_class(config.method)
    return cls(config, not has_batch_norm(network), sample_ids, num_classes)


def describe_method(config: TrainConfig) -> dict[str, Any]:
    """What the run folder records about the method for readers without torch (the report)."""
    cls = method_class(config.method)
    return {
        "name": cls.name,
        "label": cls.label(config),
        "settings": cls.settings_text(config),
        **({"citation": cls.citation} if cls.citation else {}),
    }
