"""Training configuration: a frozen dataclass with ``network``, ``adversarial`` and ``ima`` sections; every
field is also an ``imaseg train`` flag.

The sections replaced flat keys (``channels``, ``eps``, ``attack_steps``, ``adv_weight``...): config files,
pipelines and run folders written with those keys still load (each section's ``FLAT_ALIASES``), and their
flags (``--channels``, ``--eps``...) still work beside the sections' own (``--network-channels``,
``--adversarial-eps``...).

Example:
    >>> from imaseg.config import config_from_dict
    >>> old = config_from_dict(TrainConfig, {"channels": [4, 8], "eps": 1.0, "attack_steps": 5})
    >>> old.network.channels, old.adversarial.eps, old.adversarial.steps
    ((4, 8), 1.0, 5)
    >>> old == config_from_dict(TrainConfig, {"network": {"channels": [4, 8]}, "adversarial": {"eps": 1, "steps": 5}})
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from imaseg.attacks.geometry import NORMS
from imaseg.config import section, setting
from imaseg.losses.adversarial import adversarial_loss_names
from imaseg.losses.ima_config import IMAConfig
from imaseg.networks import NetworkConfig
from imaseg.run import parse_clip_range

__all__ = [
    "AdversarialConfig",
    "IMAConfig",
    "LossChoices",
    "MethodChoices",
    "NetworkConfig",
    "ThreatChoices",
    "TrainConfig",
]


class _RegistryNames:
    """Valid names read from a registry only when asked (a registry imports every module it holds)."""

    def _names(self) -> tuple[str, ...]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __len__(self) -> int:
        return len(self._names())


class LossChoices(_RegistryNames):
    """The registered adversarial losses, looked up when needed (a loss registered later is valid too)."""

    def _names(self) -> tuple[str, ...]:
        return adversarial_loss_names()


class MethodChoices(_RegistryNames):
    """The registered method names, looked up only when needed (the registry imports every method)."""

    def _names(self) -> tuple[str, ...]:
        from imaseg.training.methods.registry import method_names

        return method_names()


class ThreatChoices(_RegistryNames):
    """The inner attack kinds adversarial training takes: ``pgd`` (an L2 / Linf ball, ``norm``) and every
    registered gradient kind with a physical budget (``bias-field``, ``snr-noise``, ...), looked up when needed."""

    def _names(self) -> tuple[str, ...]:
        from imaseg.attacks.registry import ATTACKS, attack_kinds

        physical = [k for k in attack_kinds(ensemble=False) if ATTACKS[k].unit and ATTACKS[k].gradient]
        return ("pgd", *physical)


def _method_help() -> str:
    return f"training method: {', '.join(MethodChoices())}"


def _adversarial_help() -> str:
    from imaseg.training.methods import method_class
    from imaseg.training.methods.adversarial import AdversarialMethod

    users = [name for name in MethodChoices() if issubclass(method_class(name), AdversarialMethod)]
    return f"adversarial training ({', '.join(users)}); flags --adversarial-*, YAML adversarial: {{...}}"


@dataclass(frozen=True)
class AdversarialConfig:
    """The fixed-budget inner attack of adversarial training (the ``adversarial`` section), shared by
    PGD-AT and TRADES, with each one's weight.

    Runs written before the section existed kept these flat (``eps``, ``norm``, ``attack_steps``,
    ``attack_alpha_factor``, ``adv_weight``, ``trades_beta``): :attr:`FLAT_ALIASES` still reads them.
    """

    FLAT_ALIASES: ClassVar[Mapping[str, str]] = {
        "eps": "eps",
        "norm": "norm",
        "attack_steps": "steps",
        "attack_alpha_factor": "alpha_factor",
        "adv_weight": "weight",
        "trades_beta": "trades_beta",
    }

    eps: float = setting(0.5, "budget of the inner attack (model-input units; a physical threat's own unit)")
    norm: str = setting("l2", "norm of the inner attack (threat pgd)", choices=NORMS)
    steps: int = setting(10, "inner attack steps")
    alpha_factor: float = setting(2.5, "inner step size as a multiple of eps / steps")
    weight: float = setting(0.5, "pgd-at: weight of the adversarial term, (1 - w) * clean + w * adversarial")
    trades_beta: float = setting(6.0, "trades: weight of the KL term")
    loss: str = setting(
        "dice-ce",
        "pgd-at: the adversarial term: dice-ce (soft Dice + CE) or voxel-weighted (CE weighted 1 on voxels wrong on "
        "the clean input or flipped inside the budget, robust_weight elsewhere, + soft Dice: IMA voxel mode's term)",
        choices=LossChoices(),
    )
    robust_weight: float = setting(0.1, "pgd-at with the voxel-weighted loss: weight of voxels robust within eps")
    ramp: float = setting(
        0.0,
        "pgd-at / trades: a budget ramp, the same for every sample: eps grows by this much per epoch from `ramp` up to eps "
        "(IMA's margin growth without per-sample margins); 0: the fixed budget eps from the start. On the chest X-ray "
        "confirmation a ramp of 1 to eps 8 with the voxel-weighted loss did as well as IMA with eps_max 8 (area under "
        "Dice-vs-eps: IMA minus ramp +0.001, 95 percent interval -0.001..+0.002, 3 seeds; benchmarks/README.md)",
    )
    threat: str = setting(
        "pgd",
        "pgd-at: what the model is trained against: pgd (an L2 / Linf ball of radius eps, --adversarial-norm) or a "
        "physical threat whose budget eps is in its own unit, e.g. bias-field (eps 0.2: intensity varies smoothly by up "
        "to 20 percent) or snr-noise; `imaseg evaluate --help` describes each",
        choices=ThreatChoices(),
    )

    def __post_init__(self) -> None:
        if self.ramp < 0:
            raise ValueError(f"`ramp` must be >= 0, got {self.ramp}")
        if self.threat not in ThreatChoices():
            raise ValueError(f"`threat` must be one of {', '.join(ThreatChoices())}, got {self.threat!r}")

    def budget(self, epoch: int) -> float:
        """The budget of ``epoch`` (0-based): ``eps``, or with a ramp ``min(eps, ramp * (epoch + 1))``.

        >>> AdversarialConfig(eps=1.0, ramp=0.25).budget(1), AdversarialConfig(eps=1.0).budget(0)
        (0.5, 1.0)
        """
        return min(self.eps, self.ramp * (epoch + 1)) if self.ramp > 0 else self.eps

    def attack_arguments(self, epoch: int = 0) -> dict[str, Any]:
        """The budget (of ``epoch``), norm, steps and step factor as an attack's keyword arguments."""
        return {"eps": self.budget(epoch), "norm": self.norm, "steps": self.steps, "alpha_factor": self.alpha_factor}


@dataclass(frozen=True)
class TrainConfig:
    """All hyper-parameters of a training run (the same optimiser, schedule, precision and data for every
    method, so comparisons are fair)."""

    method: str = setting("std", _method_help, choices=MethodChoices())
    fold: int = setting(0, "which fold of the cache's patient-grouped split to train on (its test side is held out)")
    network: NetworkConfig = section(NetworkConfig, "network; flags --network-*, YAML network: {...}")
    # optimisation
    epochs: int = setting(50, "epochs")
    batch_size: int = setting(16, "samples per batch (per process under DDP)")
    optimizer: str = setting("adamw", "adamw or sgd (Nesterov, momentum 0.99)", choices=("adamw", "sgd"))
    lr: float = setting(2e-3, "peak learning rate")
    weight_decay: float = setting(1e-4, "weight decay")
    schedule: str = setting("cosine", "learning-rate schedule over the epochs", choices=("cosine", "poly", "constant"))
    warmup_epochs: int = setting(1, "linear warm-up epochs")
    grad_clip: float = setting(12.0, "gradient-norm clip (0: off)")
    # augmentation
    augment: bool = setting(True, "random affine, flips and intensity augmentation")
    aug_rotate: float = setting(20.0, "max in-plane rotation (degrees)")
    aug_scale: list[float] = setting([0.85, 1.2], "zoom range")
    aug_flip: bool = setting(True, "random flips along the in-plane axes")
    aug_intensity: float = setting(0.15, "max relative brightness / contrast change; gamma in [1-x, 1+x]")
    aug_noise: float = setting(0.0, "std of additive Gaussian noise (input units)")
    adversarial: AdversarialConfig = section(AdversarialConfig, _adversarial_help)
    clip_range: tuple[float, float] | None = setting(
        None, "valid input range 'lo,hi' for every attack (none: no clamp)", metavar="LO,HI"
    )
    ima: IMAConfig = section(IMAConfig, "IMA (method ima); flags --ima-*, YAML ima: {...} or ima_*")
    # data
    loader: str = setting(
        "auto",
        "memory: the split's samples stacked in memory (fast for small 2D sets); stream: cases read on demand by a "
        "DataLoader (memory bounded by cache_mib per process, not by the data set); auto: stream for patches",
        choices=("auto", "memory", "stream"),
    )
    workers: int = setting(0, "stream loader: DataLoader worker processes (0: read in the training process)")
    cache_mib: float = setting(
        512.0, "stream loader: MiB of decoded cases kept per process (least recently used out); data that fit read once"
    )
    patch_size: list[int] | None = setting(
        None, "3D: train on random patches of this size (RandCropByPosNegLabel), native resolution; none: whole samples"
    )
    patch_pos_ratio: float = setting(0.5, "3D patches: fraction centred on foreground")
    patches_per_case: int = setting(4, "3D patches: patches per case per epoch (IMA: they share the case's margin)")
    # validation and logging
    val_every: int = setting(1, "validate every N epochs (on the validation side of the split; never the test side)")
    val_eps: float = setting(0.5, "budget of the cheap validation attack (L2, soft-Dice PGD)")
    val_steps: int = setting(5, "steps of the cheap validation attack (0: skip)")
    tensorboard: bool = setting(True, "also log to TensorBoard (RUN/tb)")
    # run control
    seed: int = setting(0, "seed of initialisation, data order, augmentation and attacks")
    deterministic: bool = setting(False, "deterministic kernels (bit-identical resume)")
    amp: bool = setting(False, "mixed precision for forward passes (GPU or CPU), in amp_dtype")
    amp_dtype: str = setting(
        "bf16",
        "bf16 (no scaler needed) or fp16 (with a gradient scaler, for GPUs without bf16)",
        choices=("bf16", "fp16"),
    )
    compile: bool = setting(
        False, "torch.compile the network for training and the inner attacks (off by default: CPU compiles slowly)"
    )
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    threads: int = setting(0, "CPU threads for torch (0: torch's default)")
    init: str | None = setting(None, "checkpoint whose weights initialise the network (fine-tuning)")
    allow_foreign_init: bool = setting(
        False,
        "allow --init from a checkpoint trained on another cache or fold (refused by default: its training "
        "cases may be this run's test cases)",
    )
    time_budget: float = setting(0.0, "stop after the epoch that exceeds this many minutes (0: no limit)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "clip_range", parse_clip_range(self.clip_range))
        if self.epochs < 1:
            raise ValueError(f"`epochs` must be >= 1, got {self.epochs}")
        if self.val_every < 1:
            raise ValueError(
                f"`val_every` must be >= 1, got {self.val_every} (to train without validation, preprocess with val_groups 0)"
            )
        if len(self.aug_scale) != 2 or not 0 < self.aug_scale[0] <= self.aug_scale[1]:
            raise ValueError(
                f"`aug_scale` must be two zoom factors, low <= high, both > 0, e.g. 0.85,1.2; got {self.aug_scale}"
            )
