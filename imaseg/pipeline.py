"""Building blocks of the pipelines in ``pipelines/``: sectioned YAML configs and resumable stages.

A pipeline config has the sections ``data`` (the pipeline's own: a data path, or the demo's phantoms),
``preprocess``, ``train`` (shared by every method), ``methods`` (per-method overrides, e.g.
``ima: {method: ima, init_from: std, epochs: 20}``), ``compare`` (the methods trained by default),
``evaluate`` and ``quick`` (overrides applied with ``--quick``). :func:`load_pipeline_config` resolves it
with the one config mechanism of :mod:`imaseg.config` into a frozen :class:`PipelineConfig` of typed
sections (the same dataclasses ``imaseg preprocess / train / evaluate`` use), so a bad key or value stops
the pipeline before any work, and ``--eps 2/255`` means what it means on the main CLI. :class:`StageRunner` records each finished stage with a
fingerprint of its settings (and of the stages it reads from) in ``OUT/stages.json``: a rerun skips
finished stages, reruns changed ones and those downstream of them, and resumes an interrupted training or
evaluation where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imaseg.attacks import parse_attack_name
from imaseg.config import config_from_dict, load_yaml, merge_mappings
from imaseg.evaluation.config import EvalConfig
from imaseg.training.config import TrainConfig
from imaseg.training.methods import method_names
from imaseg.transforms.chain import PreprocessConfig
from imaseg.utils.atomic import atomic_write_json

__all__ = ["MethodPlan", "PipelineConfig", "StageRunner", "load_pipeline_config", "pipeline_arguments"]

logger = logging.getLogger("imaseg.pipeline")


@dataclass(frozen=True)
class MethodPlan:
    """One method of a pipeline: its resolved training config and the method whose weights it starts from."""

    name: str
    train: TrainConfig
    init_from: str | None = None


@dataclass(frozen=True)
class PipelineConfig:
    """A resolved pipeline config (see the module docstring); ``methods`` in training order."""

    data: dict
    preprocess: PreprocessConfig
    methods: tuple[MethodPlan, ...]
    compare: tuple[str, ...]
    evaluate: EvalConfig


def pipeline_arguments(
    parser: argparse.ArgumentParser,
    *,
    default_config: str,
    default_out: str,
    data: bool = True,
    config_help: str | None = None,
) -> None:
    """The flags every pipeline takes; ``config_help`` says what ``--config`` defaults to where
    ``default_config`` is chosen later (e.g. by another flag)."""
    if data:
        parser.add_argument("--data", help="NIfTI folder (default: the config's data.path)")
    parser.add_argument("--out", default=default_out, help=f"output folder (default: {default_out})")
    parser.add_argument(
        "--config", default=default_config, help=f"pipeline YAML (default: {config_help or default_config})"
    )
    parser.add_argument(
        "--methods", help="comma-separated methods to train and compare, e.g. std,ima,pgd-at (default: the config's)"
    )
    parser.add_argument(
        "--attacks", help="comma-separated attacks, e.g. pgd-l2,noise-l2,worst-l2 (default: the config's)"
    )
    parser.add_argument("--eps", help="comma-separated L2 budgets, fractions allowed: 0,0.5,1 (default: the config's)")
    parser.add_argument("--seed", type=int, help="seed for splits, training and attacks")
    parser.add_argument("--quick", action="store_true", help="the config's quick preset: a few minutes on a CPU")
    parser.add_argument("--device", help="auto, cpu, cuda")
    parser.add_argument("--force", action="store_true", help="rerun every stage even if recorded as done")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def _with_flags(config: dict, args: argparse.Namespace) -> dict:
    """The raw sections with the command-line flags on top (values stay raw: the dataclasses coerce them)."""
    for section in ("train", "evaluate", "preprocess"):
        config.setdefault(section, {})
    if args.attacks:
        config["evaluate"]["attacks"] = args.attacks
    if args.eps:
        config["evaluate"]["eps"] = args.eps
    if args.seed is not None:
        for section in ("train", "evaluate", "preprocess"):
            config[section]["seed"] = args.seed
    if args.device:
        config["train"]["device"] = args.device
        config["evaluate"]["device"] = args.device
    return config


def _ordered_methods(methods: dict, compare: Sequence[str]) -> list[str]:
    """The compared methods plus those they initialise from, each after its ``init_from`` source."""
    ordered: list[str] = []
    for name in compare:
        chain: list[str] = []
        current: str | None = name
        while current and current not in ordered and current not in chain:
            if current not in methods:
                raise ValueError(f"method {chain[-1]!r} initialises from {current!r}, which the config does not define")
            chain.append(current)
            current = (methods.get(current) or {}).get("init_from")
        ordered += [m for m in reversed(chain) if m not in ordered]
    return ordered


def _method_plan(config: dict, name: str, path: str) -> MethodPlan:
    settings = merge_mappings(config["train"], config["methods"].get(name) or {})
    settings.setdefault("method", name)
    source = settings.pop("init_from", None)
    if source is not None and not isinstance(source, str):
        raise ValueError(f"{path}: `methods.{name}.init_from` must be a method name, got {source!r}")
    train = config_from_dict(TrainConfig, settings, source=f"{path}: train + methods.{name}")
    return MethodPlan(name, train, source)


SECTIONS = ("data", "train", "evaluate", "preprocess", "quick", "methods")  # mappings
TOP_LEVEL = (*SECTIONS, "compare")


def _checked_sections(config: dict, path: str, *, where: str = "") -> dict:
    """``config`` with its sections checked for shape (an empty one read as ``{}``; in ``quick``, dropped), so
    that a wrong one, or a misspelt key, is named with its file before anything runs."""
    unknown = sorted(set(config) - set(TOP_LEVEL))
    if unknown:
        raise ValueError(f"{path}: unknown {where}keys {unknown}; a pipeline config has {', '.join(TOP_LEVEL)}")
    for key in SECTIONS:
        if config.get(key, {}) is None:
            config[key] = {}
            if where:  # an empty section in quick changes nothing
                del config[key]
        if not isinstance(config.get(key, {}), dict):
            kind = type(config[key]).__name__
            raise ValueError(f"{path}: `{where}{key}` must be a mapping (key: value lines), got {kind}")
    if not where and config.get("quick"):
        _checked_sections(config["quick"], path, where="quick.")
    if where and "methods" in config:  # an empty method in quick changes nothing either
        config["methods"] = {name: settings for name, settings in config["methods"].items() if settings is not None}
    for name, settings in config.get("methods", {}).items():
        if settings is not None and not isinstance(settings, dict):
            raise ValueError(
                f"{path}: `{where}methods.{name}` must be a mapping of settings, e.g. {{method: pgd-at}}, got "
                f"{settings!r}"
            )
    compare = config.get("compare")
    if compare is not None and not (isinstance(compare, list) and all(isinstance(m, str) for m in compare)):
        raise ValueError(
            f"{path}: `{where}compare` must be a list of method names, e.g. [std, pgd-at, ima], got {compare!r}"
        )
    return config


def load_pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The config file, with ``quick`` applied if asked and the command-line flags on top, resolved and checked."""
    config = _checked_sections(load_yaml(args.config), args.config)
    quick = config.pop("quick", {})
    if args.quick:
        config = merge_mappings(config, quick)
    config = _with_flags(config, args)
    if not config.get("methods"):
        config["methods"] = {"std": {"method": "std"}}
    methods = config["methods"]
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else config.get("compare")
    wanted = list(wanted or methods)
    unknown = [m for m in wanted if m not in methods and m not in method_names()]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; the config defines {sorted(methods)}")
    for name in wanted:
        methods.setdefault(name, {"method": name})
    flagged = any(getattr(args, name, None) for name in ("attacks", "eps", "device")) or args.seed is not None
    path = f"{args.config} + command-line flags" if flagged else args.config
    evaluate = config_from_dict(EvalConfig, config["evaluate"], source=f"{path}: evaluate")
    for attack in evaluate.attacks:
        parse_attack_name(attack)
    return PipelineConfig(
        data=dict(config.get("data") or {}),
        preprocess=config_from_dict(PreprocessConfig, config["preprocess"], source=f"{path}: preprocess"),
        methods=tuple(_method_plan(config, name, path) for name in _ordered_methods(methods, wanted)),
        compare=tuple(wanted),
        evaluate=evaluate,
    )


class StageRunner:
    """Runs named stages once; see the module docstring."""

    def __init__(self, out_dir: str | Path, *, force: bool = False) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "stages.json"
        self.force = force
        self.state = self._read_state()
        self.timings: dict[str, float] = {}

    def _read_state(self) -> dict:
        """``stages.json``, or ``{}`` before the first stage; a clear error for a file that is not a stage record."""
        if not self.path.is_file():
            return {}
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{self.path}: not valid JSON ({error}); delete it to run every stage again") from None
        if not isinstance(state, dict):
            raise ValueError(f"{self.path}: not a stage record (a JSON object); delete it to run every stage again")
        broken = [name for name, entry in state.items() if not isinstance(entry, dict)]
        if broken:
            raise ValueError(
                f"{self.path}: the entry of stage {broken[0]!r} is not a JSON object; delete that entry (the stage "
                "runs again) or the file (every stage runs again)"
            )
        return state

    def run(self, name: str, settings: Any, action: Callable[[bool], Any], *, after: Sequence[str] = ()) -> Any:
        """Run ``action(resume)`` unless ``name`` finished with the same settings; returns its result.

        ``resume`` is True when the stage started before (same settings) but did not finish. ``after`` names
        the stages whose outputs this one reads: their fingerprints and finishing times are part of this
        one's, so a stage reruns when anything upstream of it changed or ran again (a retrained model is
        evaluated again, even when it was retrained with the same settings).
        """
        upstream = {
            stage: [self.state.get(stage, {}).get("fingerprint"), self.state.get(stage, {}).get("finished_ns")]
            for stage in after
        }
        key = [settings, upstream] if upstream else settings
        fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
        entry = self.state.get(name, {})
        if not self.force and entry.get("done") and entry.get("fingerprint") == fingerprint:
            logger.info("stage %-22s done (%s), skipped", name, entry.get("finished", "earlier"))
            return entry.get("result")
        resume = entry.get("fingerprint") == fingerprint and not self.force
        logger.info("stage %-22s %s", name, "resuming" if resume and entry else "running")
        self.state[name] = {"done": False, "fingerprint": fingerprint, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        atomic_write_json(self.path, self.state)
        started = time.perf_counter()
        result = action(resume)
        self.timings[name] = time.perf_counter() - started
        self.state[name].update(
            done=True,
            finished=time.strftime("%Y-%m-%d %H:%M:%S"),
            finished_ns=time.time_ns(),
            seconds=self.timings[name],
            result=result if _jsonable(result) else None,
        )
        atomic_write_json(self.path, self.state)
        return result


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False
