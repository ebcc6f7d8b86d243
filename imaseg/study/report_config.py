"""The ``report`` section of a study declaration: what the tables compare and how the plot draws it.

::

    report:
      budget: 1                      # the eps of the plot's y axis and of the paired / matched tables
      compare:                       # optional: the paired and matched-clean-Dice tables
        method: ima                  # every configuration of this method ...
        label: IMA
        against: pgd-at              # ... against the configurations of this one (their Pareto front)
        against_label: PGD-AT
        against_setting: pgd-at eps 1  # the one reference of the paired table, pooled and fold by fold
        clean_within: 0.01           # "matched": clean Dice within this of the front ...
        gain: 0.03                   # ... and at least this much higher at the budget, interval above 0
      plot: {title: ..., ylabel: ..., legend_title: ...}
      colours: {std: black, ima: tab:red}   # by method or by configuration (which wins); a method's several
                                            # configurations on no curve are drawn in shades of its colour
      markers: {ima sample official: s}
      curves:                        # settings joined by a line, in order
        - {name: PGD-AT, method: pgd-at, sweep: true, settings: [pgd-at eps 0.5, pgd-at eps 1]}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imaseg.study.fields import check_keys, mapping, name_list, number, text

__all__ = ["SWEEP_MARKERS", "Comparison", "Curve", "PlotText", "ReportSettings", "parse_report"]

SWEEP_MARKERS = "vo^"  # the points of a sweep curve, in order


@dataclass(frozen=True)
class Curve:
    """Settings joined by a line in the plot, coloured as ``method``; a ``sweep`` marks its points v, o, ^."""

    name: str
    method: str
    settings: tuple[str, ...]
    sweep: bool = False


@dataclass(frozen=True)
class Comparison:
    """Configurations of ``method`` against those of ``against`` (see the module docstring)."""

    method: str
    label: str
    against: str
    against_label: str
    against_setting: str | None = None
    clean_within: float = 0.01
    gain: float = 0.03


@dataclass(frozen=True)
class PlotText:
    title: str = "accuracy-robustness frontier"
    ylabel: str | None = None
    legend_title: str | None = None


@dataclass(frozen=True)
class ReportSettings:
    """How a study is reported; every field has a default, so a study may leave ``report`` out."""

    budget: float = 1.0
    compare: Comparison | None = None
    plot: PlotText = field(default_factory=PlotText)
    colours: Mapping[str, str] = field(default_factory=dict)
    markers: Mapping[str, str] = field(default_factory=dict)
    curves: tuple[Curve, ...] = ()

    @property
    def budget_key(self) -> str:
        """The budget as records spell it (``1.0`` -> ``"1"``)."""
        return f"{self.budget:g}"

    def setting_names(self) -> set[str]:
        """Every configuration name the section refers to (checked against the study's)."""
        names = {n for c in self.curves for n in c.settings} | set(self.markers)
        if self.compare and self.compare.against_setting:
            names.add(self.compare.against_setting)
        return names


def _curve(where: str, data: Any) -> Curve:
    raw = mapping(where, data)
    check_keys(where, raw, ("name", "method", "settings", "sweep"), required=("name", "method", "settings"))
    settings = name_list(f"{where}.settings", raw["settings"])
    sweep = bool(raw.get("sweep", False))
    if sweep and len(settings) > len(SWEEP_MARKERS):
        raise ValueError(f"`{where}`: a sweep curve has at most {len(SWEEP_MARKERS)} settings, got {len(settings)}")
    return Curve(text(f"{where}.name", raw["name"]), text(f"{where}.method", raw["method"]), settings, sweep)


def _comparison(where: str, data: Any) -> Comparison:
    raw = mapping(where, data)
    keys = ("method", "label", "against", "against_label", "against_setting", "clean_within", "gain")
    check_keys(where, raw, keys, required=("method", "against"))
    setting = raw.get("against_setting")
    return Comparison(
        method=text(f"{where}.method", raw["method"]),
        label=text(f"{where}.label", raw.get("label", raw["method"])),
        against=text(f"{where}.against", raw["against"]),
        against_label=text(f"{where}.against_label", raw.get("against_label", raw["against"])),
        against_setting=None if setting is None else text(f"{where}.against_setting", setting),
        clean_within=number(f"{where}.clean_within", raw.get("clean_within", 0.01)),
        gain=number(f"{where}.gain", raw.get("gain", 0.03)),
    )


def _strings(where: str, data: Any) -> dict[str, str]:
    raw = mapping(where, data)
    for key, value in raw.items():
        text(f"{where}.{key}", value)
    return raw


def parse_report(data: Any, where: str = "report") -> ReportSettings:
    """The ``report`` section as :class:`ReportSettings` (``None`` gives the defaults)."""
    raw = mapping(where, data)
    check_keys(where, raw, ("budget", "compare", "plot", "colours", "markers", "curves"))
    plot = _strings(f"{where}.plot", raw.get("plot"))
    check_keys(f"{where}.plot", plot, ("title", "ylabel", "legend_title"))
    curves = raw.get("curves") or []
    if not isinstance(curves, list):
        raise ValueError(f"`{where}.curves` must be a list of curves, got {curves!r}")
    return ReportSettings(
        budget=number(f"{where}.budget", raw.get("budget", 1.0)),
        compare=_comparison(f"{where}.compare", raw["compare"]) if raw.get("compare") is not None else None,
        plot=PlotText(**plot),
        colours=_strings(f"{where}.colours", raw.get("colours")),
        markers=_strings(f"{where}.markers", raw.get("markers")),
        curves=tuple(_curve(f"{where}.curves[{i}]", c) for i, c in enumerate(curves)),
    )
