"""The attack registry: every attack kind, what it is, and how to build it, in one place.

An attack is named ``KIND-NORM`` (``pgd-l2``, ``cospgd-linf``, ``worst-l2``). Each kind registers an
:class:`AttackSpec` from its own module with :func:`register_attack`; the spec says what the kind is
(gradient or noise, whether it uses steps or the configured loss list, whether it is the per-sample
worst case over the other attacks of its norm), so callers ask the spec instead of comparing names.
Adding an attack kind is one new module in ``imaseg/attacks/`` that registers itself: every module of
the package is imported on first use of the registry.

Example:
    >>> spec, norm = parse_attack_name("cospgd-linf")
    >>> spec.kind, norm, spec.gradient, spec.uses_steps
    ('cospgd', 'linf', True, True)
    >>> attack_spec("noise-l2").gradient
    False
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from imaseg.attacks.geometry import NORMS
from imaseg.utils.plugins import import_submodules

if TYPE_CHECKING:
    from imaseg.attacks.base import Attack

__all__ = [
    "ATTACKS",
    "ENSEMBLE_MEMBERS",
    "AttackSettings",
    "AttackSpec",
    "attack_kinds",
    "attack_names",
    "attack_spec",
    "create_attack",
    "parse_attack_name",
    "register_attack",
]


ENSEMBLE_MEMBERS: tuple[str, ...] = ("apgd-dice", "apgd-dlr", "cospgd", "segpgd", "noise")
"""The default ensemble: APGD on soft Dice and on DLR, CosPGD, SegPGD, and same-budget noise as a baseline."""


@dataclass(frozen=True)
class AttackSettings:
    """What every attack of an evaluation (or a training method) shares, set once.

    Attributes:
        steps: gradient steps (kinds with ``uses_steps``).
        restarts: random restarts, per-sample worst kept.
        losses: attack losses of kinds with ``uses_losses`` (several: their worst case by the global-Dice rule).
        clip_range: valid input range ``(lo, hi)`` or ``None``.
        seed: attack seed.
        autocast_dtype: ``torch.bfloat16`` / ``torch.float16`` forward passes, or ``None``.
        record_flips: record per-voxel flip radii (kinds with ``records_flips``).
        noise_draws: draws of noise kinds (per-sample worst kept).
        members: kinds the ensemble kind (``worst``) chooses from (default: :data:`ENSEMBLE_MEMBERS`, the
            members of ``imaseg evaluate``'s default ensemble, so ``worst-l2`` means the same everywhere).
        step_size: absolute step of fixed-step kinds (PGD family); ``None``: ``2.5 * eps / steps``. The
            steps check sets it so that twice the steps walk with the same step, and can only do better.
        spacing: mm per voxel along each spatial axis of the attacked samples, for kinds whose budget is in
            mm (``affine-mm``); ``None``: 1 mm per voxel. The evaluation sets it per case from its grid.
        hu_per_unit: Hounsfield units per model-input unit, for kinds whose budget is in HU (``ct-intensity-hu``);
            ``None``: 1400 (``imaseg preprocess``'s CT window -1000..400 onto [0, 1]). The evaluation sets it from
            the cache's preprocessing window.
    """

    steps: int = 20
    restarts: int = 1
    losses: tuple[str, ...] = ("ce", "dice")
    clip_range: tuple[float, float] | None = None
    seed: int = 0
    autocast_dtype: torch.dtype | None = None
    record_flips: bool = False
    noise_draws: int = 1
    members: tuple[str, ...] = ENSEMBLE_MEMBERS
    step_size: float | None = None
    spacing: tuple[float, ...] | None = None
    hu_per_unit: float | None = None

    def base_arguments(self, eps: Any) -> dict[str, Any]:
        """What every attack's constructor takes from these settings: ``eps``, ``clip_range``, ``seed``,
        ``autocast_dtype``."""
        return {"eps": eps, "clip_range": self.clip_range, "seed": self.seed, "autocast_dtype": self.autocast_dtype}


Builder = Callable[..., "Attack"]
"""``build(model, *, eps, norm, settings) -> Attack``."""


@dataclass(frozen=True)
class AttackSpec:
    """One attack kind.

    Attributes:
        kind: the name before the norm (``pgd``).
        build: ``build(model, *, eps, norm, settings) -> Attack``.
        description: one line for reports (``{steps}``, ``{losses}``, ``{restarts}`` are filled in).
        gradient: follows input gradients (``False``: random noise, a baseline).
        uses_steps: its cost and strength depend on ``settings.steps``.
        uses_losses: takes ``settings.losses`` (the attack the steps check reruns).
        records_flips: can record per-voxel flip radii along its path.
        ensemble: the worst case over the other attacks of its norm (global-Dice rule).
        norms: the norms it supports; a kind with a physical budget names its own unit (``rel``, ``nsr``).
        citation: the reference a report cites when the attack is used.
        unit: what its budget measures, in words for axes (``"max relative intensity change"``); empty: the
            norm's (L2 / Linf in model-input units).
        budgets: the evaluation's budget grid for a kind with its own unit (L2 and Linf kinds use the
            evaluation's ``eps`` / ``eps_linf``).
    """

    kind: str
    build: Builder = field(repr=False)
    description: str
    gradient: bool = True
    uses_steps: bool = True
    uses_losses: bool = False
    records_flips: bool = False
    ensemble: bool = False
    norms: tuple[str, ...] = NORMS
    citation: str = ""
    unit: str = ""
    budgets: tuple[float, ...] = ()

    def describe(self, settings: AttackSettings | dict) -> str:
        """The description with the settings filled in (a dict as saved in ``summary.json`` works too)."""
        values = settings if isinstance(settings, dict) else vars(settings)
        losses = values.get("losses", ())
        return self.description.format(
            steps=values.get("steps"), restarts=values.get("restarts"), losses="+".join(losses)
        )


ATTACKS: dict[str, AttackSpec] = {}


def register_attack(
    kind: str, description: str, **properties: bool | tuple[str, ...] | tuple[float, ...] | str
) -> Callable[[Builder], Builder]:
    """Decorator registering ``build`` as attack kind ``kind`` (see :class:`AttackSpec` for properties)."""

    def decorate(build: Builder) -> Builder:
        if kind in ATTACKS and ATTACKS[kind].build is not build:
            raise ValueError(f"attack kind {kind!r} is registered twice")
        ATTACKS[kind] = AttackSpec(kind, build, description, **properties)  # type: ignore[arg-type]
        return build

    return decorate


def attack_names() -> tuple[str, ...]:
    """Every valid ``KIND-NORM`` name."""
    import_submodules("imaseg.attacks")
    return tuple(f"{kind}-{norm}" for kind, spec in ATTACKS.items() for norm in spec.norms)


def attack_kinds(*, ensemble: bool | None = None, records_flips: bool | None = None) -> tuple[str, ...]:
    """The registered kinds (for help texts), optionally only those whose spec has (``True``) or lacks
    (``False``) the ``ensemble`` / ``records_flips`` property."""
    import_submodules("imaseg.attacks")
    return tuple(
        kind
        for kind, spec in ATTACKS.items()
        if (ensemble is None or spec.ensemble == ensemble)
        and (records_flips is None or spec.records_flips == records_flips)
    )


def parse_attack_name(name: str) -> tuple[AttackSpec, str]:
    """``"pgd-l2" -> (spec of pgd, "l2")``; raises listing the valid names."""
    import_submodules("imaseg.attacks")
    kind, _, norm = str(name).lower().rpartition("-")
    spec = ATTACKS.get(kind)
    if spec is None or norm not in spec.norms:
        raise ValueError(f"unknown attack {name!r}; choose one of {', '.join(attack_names())}")
    return spec, norm


def attack_spec(name: str) -> AttackSpec:
    """The spec of attack ``KIND-NORM`` (or of a bare kind)."""
    import_submodules("imaseg.attacks")
    if str(name).lower() in ATTACKS:
        return ATTACKS[str(name).lower()]
    return parse_attack_name(name)[0]


def create_attack(
    name: str, model, *, eps: float | torch.Tensor, settings: AttackSettings | None = None, **overrides
) -> Attack:
    """Build the attack called ``name`` with shared ``settings`` (``overrides`` replace single fields).

    Example:
        >>> import torch
        >>> net = torch.nn.Conv2d(1, 3, 1)
        >>> attack = create_attack("pgd-l2", net, eps=0.5, steps=2, losses=("ce",))
        >>> type(attack).__name__, attack.steps
        ('PGD', 2)
    """
    spec, norm = parse_attack_name(name)
    settings = settings or AttackSettings()
    if overrides:
        if "losses" in overrides:
            overrides["losses"] = tuple(overrides["losses"])
        settings = _replace(settings, overrides)
    return spec.build(model, eps=eps, norm=norm, settings=settings)


def _replace(settings: AttackSettings, overrides: dict) -> AttackSettings:
    from dataclasses import fields, replace

    valid = {f.name for f in fields(AttackSettings)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(f"unknown attack settings {unknown}; valid: {', '.join(sorted(valid))}")
    return replace(settings, **overrides)


def member_names(norm: str, settings: AttackSettings, names: Sequence[str] | None = None) -> list[str]:
    """The ``KIND-NORM`` names an ensemble of ``norm`` runs: ``names`` of that norm, else the settings' kinds."""
    if names is not None:
        return [n for n in names if parse_attack_name(n)[1] == norm and not attack_spec(n).ensemble]
    return [f"{kind}-{norm}" for kind in settings.members]
