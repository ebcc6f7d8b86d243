"""``RUN/eval/TAG/summary.json`` as a typed, versioned record: the one module that spells its keys.

``imaseg evaluate`` builds a :class:`Summary` (:func:`imaseg.evaluation.summary.build_summary`) and writes
``Summary.to_json()``; every reader (the report, the bundle's robustness card, ``evaluate --strict``, the
pipelines and benchmarks) loads it with :meth:`Summary.read` / :meth:`Summary.from_json` and asks it
(``clean_global``, ``curve(attack)``, ``robust_global(attack, eps)``, ``failed_checks()``...).

The JSON keys are the field names, in field order. ``version`` says which layout a file has; a file
without it predates the key and has layout 1 (keys added later load as empty). Keys this module does not
know are kept and written back. NaN is written as ``null``: a scalar number read as ``null`` is NaN again.
Neither torch nor numpy is imported, so the report reads summaries anywhere.

>>> s = Summary.from_json({"classes": {"1": "lv"}, "clean": {"dice": {"global": [0.9]},
...     "mean_dice": {"global": 0.9}}, "attacks": {}})
>>> s.version, s.clean_global, s.main_attack, s.failed_checks()
(1, 0.9, None, [])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imaseg.data.errors import DataError
from imaseg.utils.json_record import JsonRecord, json_field

__all__ = [
    "AGGREGATION_HELP",
    "CLEAN",
    "GLOBAL",
    "HEADLINE_METRIC",
    "SUMMARY_VERSION",
    "AttackCurve",
    "CellSummary",
    "Checks",
    "DeterminismCheck",
    "Endpoints",
    "MaskingCheck",
    "MonotoneCheck",
    "NoiseCheck",
    "RunFacts",
    "Settings",
    "StepsCheck",
    "Summary",
    "cell_key",
]

SUMMARY_VERSION = 1
CLEAN = "clean"  # the name of the unattacked cell
GLOBAL = "global"  # the headline aggregation (imaseg.evaluation.metrics.AGGREGATIONS)
HEADLINE_METRIC = "global voxel Dice, mean over foreground classes"
AGGREGATION_HELP = {
    GLOBAL: "global voxel Dice: tp/fp/fn summed over all voxels of all cases, one Dice per class",
    "case": "per-case mean: each whole case's Dice, averaged over cases (cases without the class skipped)",
    "slice": "per-slice mean: each 2D slice's Dice, averaged over slices holding the class in truth or prediction",
}
NAN = float("nan")


def _number(value: Any) -> float:
    return NAN if value is None else float(value)


@dataclass(frozen=True, kw_only=True)
class CellSummary(JsonRecord):
    """The clean pass or one (attack, eps) cell: Dice per class under each aggregation (``dice``), their
    means over classes (``mean_dice``), the 95% interval of the global mean over patients, HD95 per class,
    the realised budget, and for a worst case how many samples each member won."""

    members_won: dict[str, int] = json_field(dict, omit_empty=True)
    dice: dict[str, list]
    mean_dice: dict[str, Any]
    ci_global: list[float] | None = json_field(None, omit_empty=True)
    hd95: list = json_field(list)
    hd95_undefined: list = json_field(list)
    realised_norm: float = NAN
    eps_source: float = NAN
    eps_rms: float = NAN

    @property
    def global_dice(self) -> float:
        """The headline: global voxel Dice, mean over foreground classes."""
        return self.mean(GLOBAL)

    def mean(self, aggregation: str = GLOBAL) -> float:
        """Dice under ``aggregation``, mean over foreground classes."""
        return _number(self.mean_dice.get(aggregation))

    def class_dice(self, aggregation: str = GLOBAL) -> list[float]:
        """Dice per foreground class under ``aggregation`` (NaN where undefined)."""
        return [_number(v) for v in self.dice.get(aggregation, [])]

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95% bootstrap interval of :attr:`global_dice` over patients, if computed."""
        return None if not self.ci_global else (_number(self.ci_global[0]), _number(self.ci_global[1]))


@dataclass(frozen=True, kw_only=True)
class AttackCurve(JsonRecord):
    """One attack along its budget grid: a cell per eps and the area under Dice-vs-eps over the range."""

    norm: str
    eps: list[float]
    cells: list[CellSummary] = json_field(list, record=CellSummary, many=list)
    auc: float = NAN

    def __post_init__(self) -> None:
        if len(self.eps) != len(self.cells):
            raise ValueError(f"an attack curve needs one cell per eps, got {len(self.eps)} eps and {len(self.cells)}")

    @property
    def global_curve(self) -> list[float]:
        return [c.global_dice for c in self.cells]

    def attacked(self) -> list[tuple[float, CellSummary]]:
        """``(eps, cell)`` for the budgets above 0 (eps 0 repeats the clean pass)."""
        return [(e, c) for e, c in zip(self.eps, self.cells) if e > 0]

    def cell(self, eps: float) -> CellSummary:
        for e, c in zip(self.eps, self.cells):
            if math.isclose(e, eps, rel_tol=1e-9, abs_tol=1e-12):
                return c
        raise KeyError(f"no cell at eps {eps:g}; the budgets are {', '.join(f'{e:g}' for e in self.eps)}")


@dataclass(frozen=True, kw_only=True)
class DeterminismCheck(JsonRecord):
    """``forward_deterministic``: every attack at eps 0 gives exactly the clean Dice."""

    max_abs_diff: float = NAN
    ok: bool | None = json_field(None, omit_empty=True)


@dataclass(frozen=True, kw_only=True)
class NoiseCheck(JsonRecord):
    """A row of ``noise_weaker_than_attack``: same-budget noise against a gradient attack."""

    eps: float = NAN
    noise: str = ""
    attack: str = ""
    noise_dice: float = NAN
    attack_dice: float = NAN
    ok: bool | None = json_field(None, omit_empty=True)


@dataclass(frozen=True, kw_only=True)
class MonotoneCheck(JsonRecord):
    """A row of ``dice_falls_with_eps``: the Dice change from one budget (``eps[0]``) to the next."""

    attack: str = ""
    eps: list[float] = json_field(list)
    rise: float = NAN
    ok: bool | None = json_field(None, omit_empty=True)


@dataclass(frozen=True, kw_only=True)
class StepsCheck(JsonRecord):
    """``steps_2x``: the strongest single attack rerun with twice the steps at the same step size."""

    attack: str = ""
    eps: float = NAN
    cases: list[str] = json_field(list)
    step_size: float = NAN
    dice_steps: float = NAN
    dice_2x_steps: float = NAN
    ok: bool | None = json_field(None, omit_empty=True)


@dataclass(frozen=True, kw_only=True)
class MaskingCheck(JsonRecord):
    """``gradient_free`` / ``transfer``: an attack that does not follow the evaluated model's gradients (random
    search, or perturbations crafted on a ``surrogate``) against the gradient attacks' worst case on the same
    ``cases`` at the headline budget; ``ok`` false when it ends lower (gradient masking). A check that could
    not run has no ``ok`` and says why in ``note``."""

    attack: str = ""
    eps: float = NAN
    cases: list[str] = json_field(list)
    dice: float | None = json_field(None, omit_empty=True)  # None: not run
    gradient_attack: str = ""
    gradient_dice: float = NAN
    surrogate: str | None = json_field(None, omit_empty=True)
    note: str | None = json_field(None, omit_empty=True)
    ok: bool | None = json_field(None, omit_empty=True)


@dataclass(frozen=True, kw_only=True)
class Checks(JsonRecord):
    """The sanity checks (:mod:`imaseg.evaluation.checks`): each row can fail (``ok`` false), and
    ``warnings`` says what failed in words."""

    warnings: list[str] = json_field(list)
    forward_deterministic: DeterminismCheck | None = json_field(None, record=DeterminismCheck, omit_empty=True)
    noise_weaker_than_attack: list[NoiseCheck] = json_field(list, record=NoiseCheck, many=list)
    dice_falls_with_eps: list[MonotoneCheck] = json_field(list, record=MonotoneCheck, many=list)
    steps_2x: StepsCheck | None = json_field(None, record=StepsCheck, omit_empty=True)
    gradient_free: MaskingCheck | None = json_field(None, record=MaskingCheck, omit_empty=True)
    transfer: MaskingCheck | None = json_field(None, record=MaskingCheck, omit_empty=True)

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> Checks:
        if isinstance(data, Mapping) and "eps0_equals_clean" in data and "forward_deterministic" not in data:
            data = {("forward_deterministic" if k == "eps0_equals_clean" else k): v for k, v in data.items()}
        return super().from_json(data, where)

    def failed(self) -> list[str]:
        """Names of the checks with any ``ok: false``: the one rule behind ``imaseg evaluate --strict``,
        the report and the bundle's robustness card (every check, one row or a list of rows)."""
        failed = []
        for name, value in self.to_json().items():
            rows = value if isinstance(value, list) else [value]
            if any(isinstance(row, Mapping) and row.get("ok") is False for row in rows):
                failed.append(name)
        return failed


@dataclass(frozen=True, kw_only=True)
class Endpoints(JsonRecord):
    """Clinical endpoints: the mean absolute error of each endpoint per cell (``cell_key``), and whether
    cardiac endpoints (EF, volumes, mass) were derived."""

    mean_abs_error: dict[str, dict[str, Any]] = json_field(dict)
    cardiac: bool = False

    def errors(self, attack: str | None = None, eps: float = 0.0) -> dict[str, float]:
        """``{endpoint: mean absolute error}`` of the clean pass (no ``attack``) or one cell."""
        return {k: _number(v) for k, v in self.mean_abs_error.get(cell_key(attack, eps), {}).items()}


def cell_key(attack: str | None, eps: float = 0.0) -> str:
    """How a summary names a cell (as :attr:`imaseg.evaluation.cells.Cell.key`): ``clean``, ``ATTACK__epsE``."""
    return CLEAN if attack in (None, CLEAN) else f"{attack}__eps{eps:.6g}"


@dataclass(frozen=True, kw_only=True)
class Settings(JsonRecord):
    """The evaluation settings as ``EvalConfig`` wrote them (every key kept, in ``extra``), with typed views."""

    def _get(self, name: str, default: Any = None) -> Any:
        value = self.extra.get(name)
        return default if value is None else value

    @property
    def attacks(self) -> list[str]:
        return list(self._get("attacks", []))

    @property
    def steps(self) -> int | None:
        return self._get("steps")

    @property
    def restarts(self) -> int | None:
        return self._get("restarts")

    @property
    def seed(self) -> int | None:
        return self._get("seed")

    @property
    def eps_unit(self) -> str:
        return str(self._get("eps_unit", "l2"))

    @property
    def postprocess(self) -> str:
        """The post-processing applied to every prediction before it was scored (``none``: the raw argmax;
        summaries written before the setting existed had none)."""
        return str(self._get("postprocess", "none"))

    @property
    def clip_range(self) -> list[float] | None:
        """``[low, high]`` the attacks clipped to, or ``None``."""
        clip = self.extra.get("clip_range")
        return list(clip) if isinstance(clip, list) and len(clip) == 2 else None


@dataclass(frozen=True, kw_only=True)
class RunFacts(JsonRecord):
    """What the report needs to know about the run, its data and the attacks without reading anything else
    (top-level keys of the summary)."""

    run: str | None = None
    checkpoint: str | None = None
    epoch: int | None = None
    method: str | None = None
    cases: list[str] = json_field(list)
    spatial_dims: int | None = None
    modality: str | None = None
    dataset: str | None = None
    intensity: str | None = None
    spatial_size: list[int] | None = None
    patients: int | None = None
    attack_descriptions: dict[str, str] = json_field(dict)
    noise_attacks: list[str] = json_field(list)
    main_attack: str | None = None
    citations: list[str] = json_field(list)


@dataclass(frozen=True, kw_only=True)
class Summary(JsonRecord):
    """``summary.json``: Dice per class under each aggregation, clean and per attack and budget, the checks,
    the headline lines, the settings, what the evaluation knew of the run, and the endpoint errors."""

    version: int = SUMMARY_VERSION
    classes: dict[str, str]
    aggregations: dict[str, str] = json_field(dict)
    headline_metric: str = HEADLINE_METRIC
    clean: CellSummary = json_field(record=CellSummary)
    attacks: dict[str, AttackCurve] = json_field(record=AttackCurve, many=dict)
    robust_dice: dict[str, dict[str, Any]] = json_field(dict)
    checks: Checks = json_field(Checks, record=Checks)
    headline: list[str] = json_field(list)
    settings: Settings = json_field(Settings, record=Settings)
    seconds: float = NAN
    facts: RunFacts = json_field(RunFacts, record=RunFacts, flat=True)
    endpoints: Endpoints | None = json_field(None, record=Endpoints, omit_empty=True)

    @classmethod
    def from_json(cls, data: Any, where: str = "summary") -> Summary:
        version = data.get("version", 1) if isinstance(data, Mapping) else 1
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"{where}: `version` must be an integer >= 1, got {version!r}")
        if version > SUMMARY_VERSION:
            raise ValueError(
                f"{where} has version {version}; this imaseg reads up to {SUMMARY_VERSION}: upgrade imaseg"
            )
        return super().from_json(data, where)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Summary:
        """Load ``summary.json``; a missing, unreadable or malformed file raises :class:`DataError`."""
        path = Path(path)
        fix = "rerun `imaseg evaluate` to write it again"
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
        except FileNotFoundError:
            raise DataError(f"{path}: missing; run `imaseg evaluate` first", [path]) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: not valid JSON ({error}); {fix}", [path]) from None
        except ValueError as error:
            where = "" if str(error).startswith(str(path)) else f"{path}: "
            raise DataError(f"{where}{error}; {fix}", [path]) from None

    @staticmethod
    def robust_table(attacks: Mapping[str, AttackCurve]) -> dict[str, dict[str, float]]:
        """``robust_dice``: per attack, the global Dice at each budget (keyed by the budget as ``%g``)."""
        return {name: {f"{e:g}": d for e, d in zip(c.eps, c.global_curve)} for name, c in attacks.items()}

    @property
    def clean_global(self) -> float:
        return self.clean.global_dice

    @property
    def class_names(self) -> list[str]:
        return list(self.classes.values())

    @property
    def main_attack(self) -> str | None:
        """The attack a report leads with: the one evaluation chose, else the first evaluated."""
        chosen = self.facts.main_attack
        return chosen if chosen in self.attacks else next(iter(self.attacks), None)

    def curve(self, attack: str) -> AttackCurve:
        if attack not in self.attacks:
            raise KeyError(f"no attack {attack!r} in this summary; evaluated: {', '.join(self.attacks) or 'none'}")
        return self.attacks[attack]

    def robust_global(self, attack: str, eps: float) -> float:
        """Global Dice under ``attack`` at budget ``eps``."""
        return self.curve(attack).cell(eps).global_dice

    def failed_checks(self) -> list[str]:
        """Names of the failed sanity checks (see :meth:`Checks.failed`)."""
        return self.checks.failed()

    @property
    def warnings(self) -> list[str]:
        return list(self.checks.warnings)
