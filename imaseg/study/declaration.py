"""A study declaration: one YAML file, read with ``yaml.safe_load`` into frozen dataclasses.

::

    name: frontier_acdc              # outputs: RESULTS/NAME.md|.json|.png, records: RESULTS/NAME_records.json
    data: ../../../shared/data/acdc_heart   # paths are relative to this file
    work: ../work/frontier           # run folders and the cache (not committed)
    results: ../results              # records and report (committed)
    folds: [0, 1, 2]
    seeds: [0]
    max_minutes: 170                 # `imaseg study run` stops between cells after this
    robust_attack: worst-l2          # the attack whose Dice the records keep per case (with the clean Dice)
    preprocess: {...}                # PreprocessConfig keys
    train: {...}                     # TrainConfig keys every configuration shares
    recipes: {fine-tune: {...}}      # named groups of TrainConfig keys a configuration may take
    evaluate: {...}                  # EvalConfig keys (its seed is the cell's seed)
    configurations:
      std: {method: std, train: {epochs: 60}}
      pgd-at eps 1: {method: pgd-at, init: std, recipe: fine-tune, train: {eps: 1.0}}
      ablation: {method: ima, init: std, recipe: fine-tune, folds: [0]}
    report: {...}                    # see imaseg.study.report_config

A configuration's training settings are ``train``, then its ``recipe``, then its own ``train`` (nested
sections such as ``ima`` merge key by key); ``init`` names the configuration whose model of the same fold
and seed it fine-tunes. The settings are checked against the config dataclasses when the study runs
(:func:`imaseg.study.runner.resolve_cell`); this module imports no torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from imaseg.study.fields import check_keys, int_list, mapping, number, text
from imaseg.study.report_config import ReportSettings, parse_report

__all__ = ["Configuration", "Study", "load_study"]

_TOP = (
    "name", "description", "data", "work", "results", "folds", "seeds", "max_minutes", "robust_attack",
    "preprocess", "train", "recipes", "evaluate", "configurations", "report",
)  # fmt: skip
_CONFIGURATION = ("method", "init", "recipe", "train", "evaluate", "folds", "seeds")
# set per cell by the study itself, never in a settings section
_OWNED = {"method": "method", "init": "init", "fold": "folds", "seed": "seeds"}


@dataclass(frozen=True)
class Configuration:
    """One named configuration: a method, its setting overrides, the configuration it starts from."""

    name: str
    method: str
    train: Mapping[str, Any] = field(default_factory=dict)
    evaluate: Mapping[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    init: str | None = None
    folds: tuple[int, ...] | None = None  # None: the study's
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Study:
    """A parsed declaration (see the module docstring); paths are resolved."""

    name: str
    source: Path
    data: Path
    work: Path
    results: Path
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    configurations: tuple[Configuration, ...]
    preprocess: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    recipes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    evaluate: Mapping[str, Any] = field(default_factory=dict)
    robust_attack: str = "worst-l2"
    max_minutes: float | None = None
    description: str = ""
    report: ReportSettings = field(default_factory=ReportSettings)

    @property
    def records_path(self) -> Path:
        """The committed records file: every finished cell with its per-case counts."""
        return self.results / f"{self.name}_records.json"

    @property
    def margins_dir(self) -> Path:
        """Where each IMA cell's ``margins.json`` is copied (committed with the records, so margin claims can be
        checked without the run folders)."""
        return self.results / f"{self.name}_margins"

    @property
    def output_prefix(self) -> Path:
        """The report's outputs without suffix (``.md``, ``.json``, ``.png``)."""
        return self.results / self.name

    def configuration(self, name: str) -> Configuration:
        for configuration in self.configurations:
            if configuration.name == name:
                return configuration
        raise KeyError(f"no configuration {name!r} in {self.source}; it declares {self.names()}")

    def names(self) -> list[str]:
        return [c.name for c in self.configurations]


def _settings(where: str, value: Any) -> dict[str, Any]:
    settings = mapping(where, value)
    owned = sorted(k for k in settings if k in _OWNED)
    if owned:
        hints = ", ".join(f"`{k}` -> the configuration's `{_OWNED[k]}`" for k in owned)
        raise ValueError(f"{where}: {owned} are set by the study per cell ({hints}), not in a settings section")
    return settings


def _configuration(name: str, data: Any, recipes: Mapping[str, Any]) -> Configuration:
    where = f"configurations.{name}"
    raw = mapping(where, data)
    check_keys(where, raw, _CONFIGURATION, required=("method",))
    recipe = raw.get("recipe")
    if recipe is not None and not isinstance(recipe, str):
        raise ValueError(f"{where}: `recipe` must be the name of a declared recipe, got {recipe!r}")
    if recipe is not None and recipe not in recipes:
        raise ValueError(f"{where}: recipe {recipe!r} is not declared; recipes: {sorted(recipes)}")
    return Configuration(
        name=name,
        method=text(f"{where}.method", raw["method"]),
        train=_settings(f"{where}.train", raw.get("train")),
        evaluate=_settings(f"{where}.evaluate", raw.get("evaluate")),
        recipe=recipe,
        init=None if raw.get("init") is None else text(f"{where}.init", raw["init"]),
        folds=int_list(f"{where}.folds", raw["folds"]) if "folds" in raw else None,
        seeds=int_list(f"{where}.seeds", raw["seeds"]) if "seeds" in raw else None,
    )


def _check_inits(configurations: tuple[Configuration, ...], folds: tuple[int, ...]) -> None:
    """Every ``init`` names a configuration that runs on the same folds, without cycles."""
    by_name = {c.name: c for c in configurations}
    for configuration in configurations:
        seen = [configuration.name]
        current = configuration
        while current.init is not None:
            if current.init not in by_name:
                raise ValueError(
                    f"configurations.{current.name}: init {current.init!r} is not a configuration; "
                    f"declared: {list(by_name)}"
                )
            if current.init in seen:
                raise ValueError(f"configurations: init forms a cycle: {' -> '.join([*seen, current.init])}")
            source = by_name[current.init]
            missing = sorted(set(current.folds or folds) - set(source.folds or folds))
            if missing:
                raise ValueError(f"configurations.{current.name}: init {source.name!r} does not run on folds {missing}")
            seen.append(source.name)
            current = source


def _path(base: Path, where: str, value: Any) -> Path:
    try:
        path = Path(text(where, value)).expanduser()
    except RuntimeError as error:  # ~user that does not exist, or no home directory to expand ~ to
        raise ValueError(f"{where}: cannot expand {value!r} ({error}); give the path without ~") from None
    return path if path.is_absolute() else Path(os.path.normpath(base / path))


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"study declaration {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a study holds a mapping at the top level, got {type(data).__name__}")
    return data


def _parse(path: Path, raw: dict[str, Any]) -> Study:
    check_keys("study", raw, _TOP, required=("name", "data", "work", "results", "folds", "configurations"))
    recipes = {k: _settings(f"recipes.{k}", v) for k, v in mapping("recipes", raw.get("recipes")).items()}
    declared = mapping("configurations", raw["configurations"])
    if not declared:
        raise ValueError("`configurations` must declare at least one configuration")
    configurations = tuple(_configuration(name, data, recipes) for name, data in declared.items())
    folds = int_list("folds", raw["folds"])
    _check_inits(configurations, folds)
    report = parse_report(raw.get("report"))
    unknown = sorted(report.setting_names() - set(declared))
    if unknown:
        raise ValueError(f"report: names {unknown} are not configurations; declared: {list(declared)}")
    base = path.parent
    name = text("name", raw["name"])
    if Path(name).name != name:
        raise ValueError(f"`name` must be a plain file name (it names the outputs), got {name!r}")
    return Study(
        name=name,
        source=path,
        data=_path(base, "data", raw["data"]),
        work=_path(base, "work", raw["work"]),
        results=_path(base, "results", raw["results"]),
        folds=folds,
        seeds=int_list("seeds", raw.get("seeds", [0])),
        configurations=configurations,
        preprocess=mapping("preprocess", raw.get("preprocess")),
        train=_settings("train", raw.get("train")),
        recipes=recipes,
        evaluate=_settings("evaluate", raw.get("evaluate")),
        robust_attack=text("robust_attack", raw.get("robust_attack", "worst-l2")),
        max_minutes=None if raw.get("max_minutes") is None else number("max_minutes", raw["max_minutes"]),
        description=str(raw.get("description") or ""),
        report=report,
    )


def load_study(path: str | os.PathLike[str]) -> Study:
    """Read and check a study declaration; errors name the file and the key.

    Raises:
        FileNotFoundError: no such file.
        ValueError: invalid YAML, an unknown or missing key, a bad value, an ``init`` that names no
            configuration or forms a cycle.
    """
    source = Path(path).resolve()
    raw = _read(source)
    try:
        return _parse(source, raw)
    except ValueError as error:
        raise ValueError(f"{source.name}: {error}") from None
