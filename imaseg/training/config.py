"""Training configuration: a frozen dataclass with an ``ima`` section; every field is also an ``imaseg train`` flag."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["IMAConfig", "MethodChoices", "TrainConfig"]


class MethodChoices:
    """The registered method names, looked up only when needed (so building the CLI does not import torch)."""

    def _names(self) -> tuple[str, ...]:
        from imaseg.training.methods.registry import method_names

        return method_names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __len__(self) -> int:
        return len(self._names())


def _f(default, help_text: str, **extra):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help_text, **extra})
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass(frozen=True)
class IMAConfig:
    """IMA's own settings (the ``ima`` section of :class:`TrainConfig`); the keyword arguments of
    :class:`~imaseg.losses.IMALoss`, field for field.

    Example:
        >>> from imaseg.config import config_from_dict
        >>> config = config_from_dict(TrainConfig, {"method": "ima", "ima_delta": "1/4", "ima": {"steps": 20}})
        >>> config.ima.delta, config.ima.steps
        (0.25, 20)
    """

    margin: str = _f("voxel", "mode: voxel (ours) or sample (the published algorithm)", choices=("voxel", "sample"))
    delta: float = _f(0.25, "margin step and initial margin (L2)")
    eps_max: float = _f(1.0, "largest margin (L2)")
    eps_min: float = _f(
        0.0,
        "smallest margin (L2); 0 is the published rule. Recommended: PGD-AT's eps with eps_max twice it, which beat"
        " PGD-AT under attack on every fold of the ACDC study for a little clean Dice (benchmarks/README.md)",
    )
    beta: float = _f(0.5, "weight of the adversarial term")
    tau: float = _f(0.6, "Dice threshold of the 'still correct' predicate")
    dice_reduction: str | None = _f(
        None, "predicate over classes: max, mean, min (default: max for sample, mean for voxel)"
    )
    steps: int = _f(10, "inner PGD steps (official: 20)")
    alpha_factor: float = _f(4.0, "inner step as a multiple of margin / steps (official: 4)")
    bisection_steps: int = _f(10, "sample mode: bisection steps")
    empty_tolerance: float = _f(0.002, "foreground fraction tolerated on samples with empty ground truth")
    empty_policy: str = _f(
        "tolerance",
        "samples with empty ground truth: tolerance (correct while few voxels are predicted foreground) or fail "
        "(the official code: they fail at once)",
        choices=("tolerance", "fail"),
    )
    robust_weight: float = _f(0.1, "voxel mode: loss weight of voxels robust beyond the margin")
    voxel_start: float = _f(0.05, "voxel mode: random-start radius as a fraction of the margin")
    voxel_alpha_factor: float = _f(2.5, "voxel mode: inner step as a multiple of margin / steps")


@dataclass(frozen=True)
class TrainConfig:
    """All hyper-parameters of a training run (the same optimiser, schedule, precision and data for every
    method, so comparisons are fair)."""

    method: str = _f("std", "training method (the registered ones)", choices=MethodChoices())
    fold: int = _f(0, "which fold of the cache's patient-grouped split to train on (its test side is held out)")
    # network
    network: str = _f(
        "unet",
        "MONAI network: unet, basicunet, segresnet, dynunet, attentionunet; or your own as package.module:factory "
        "(called with spatial_dims, in_channels, out_channels; returns an nn.Module giving logits)",
    )
    channels: list[int] = _f([16, 32, 64, 128, 256], "feature channels per level (unet/attentionunet)")
    res_units: int = _f(2, "residual units per level (unet)")
    dropout: float = _f(0.0, "dropout (unet)")
    # optimisation
    epochs: int = _f(50, "epochs")
    batch_size: int = _f(16, "samples per batch (per process under DDP)")
    optimizer: str = _f("adamw", "adamw or sgd (Nesterov, momentum 0.99)", choices=("adamw", "sgd"))
    lr: float = _f(2e-3, "peak learning rate")
    weight_decay: float = _f(1e-4, "weight decay")
    schedule: str = _f("cosine", "learning-rate schedule over the epochs", choices=("cosine", "poly", "constant"))
    warmup_epochs: int = _f(1, "linear warm-up epochs")
    grad_clip: float = _f(12.0, "gradient-norm clip (0: off)")
    # augmentation
    augment: bool = _f(True, "random affine, flips and intensity augmentation")
    aug_rotate: float = _f(20.0, "max in-plane rotation (degrees)")
    aug_scale: list[float] = _f([0.85, 1.2], "zoom range")
    aug_flip: bool = _f(True, "random flips along the in-plane axes")
    aug_intensity: float = _f(0.15, "max relative brightness / contrast change; gamma in [1-x, 1+x]")
    aug_noise: float = _f(0.0, "std of additive Gaussian noise (input units)")
    # adversarial training (pgd-at, trades)
    eps: float = _f(0.5, "pgd-at / trades budget (model-input units)")
    norm: str = _f("l2", "pgd-at / trades norm", choices=("l2", "linf"))
    attack_steps: int = _f(10, "pgd-at / trades inner steps")
    attack_alpha_factor: float = _f(2.5, "inner step size as a multiple of eps / steps")
    adv_weight: float = _f(0.5, "pgd-at: weight of the adversarial term, (1 - w) * clean + w * adversarial")
    trades_beta: float = _f(6.0, "trades: weight of the KL term")
    clip_range: list[float] | None = _f(None, "valid input range 'lo,hi' for every attack (none: no clamp)")
    ima: IMAConfig = field(
        default_factory=lambda: IMAConfig(),
        metadata={"help": "IMA (method ima); flags --ima-*, YAML ima: {...} or ima_*"},
    )
    # data
    loader: str = _f(
        "auto",
        "memory: the split's samples stacked in memory (fast for small 2D sets); stream: cases read on demand by a "
        "DataLoader (memory bounded by cache_mib per process, not by the data set); auto: stream for patches",
        choices=("auto", "memory", "stream"),
    )
    workers: int = _f(0, "stream loader: DataLoader worker processes (0: read in the training process)")
    cache_mib: float = _f(
        512.0, "stream loader: MiB of decoded cases kept per process (least recently used out); data that fit read once"
    )
    patch_size: list[int] | None = _f(
        None, "3D: train on random patches of this size (RandCropByPosNegLabel), native resolution; none: whole samples"
    )
    patch_pos_ratio: float = _f(0.5, "3D patches: fraction centred on foreground")
    patches_per_case: int = _f(4, "3D patches: patches per case per epoch (IMA: they share the case's margin)")
    # validation and logging
    val_every: int = _f(1, "validate every N epochs (on the validation side of the split; never the test side)")
    val_eps: float = _f(0.5, "budget of the cheap validation attack (L2, soft-Dice PGD)")
    val_steps: int = _f(5, "steps of the cheap validation attack (0: skip)")
    tensorboard: bool = _f(True, "also log to TensorBoard (RUN/tb)")
    # run control
    seed: int = _f(0, "seed of initialisation, data order, augmentation and attacks")
    deterministic: bool = _f(False, "deterministic kernels (bit-identical resume)")
    amp: bool = _f(False, "mixed precision for forward passes (GPU or CPU), in amp_dtype")
    amp_dtype: str = _f(
        "bf16",
        "bf16 (no scaler needed) or fp16 (with a gradient scaler, for GPUs without bf16)",
        choices=("bf16", "fp16"),
    )
    compile: bool = _f(
        False, "torch.compile the network for training and the inner attacks (off by default: CPU compiles slowly)"
    )
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    threads: int = _f(0, "CPU threads for torch (0: torch's default)")
    init: str | None = _f(None, "checkpoint whose weights initialise the network (fine-tuning)")
    allow_foreign_init: bool = _f(
        False,
        "allow --init from a checkpoint trained on another cache or fold (refused by default: its training "
        "cases may be this run's test cases)",
    )
    time_budget: float = _f(0.0, "stop after the epoch that exceeds this many minutes (0: no limit)")
