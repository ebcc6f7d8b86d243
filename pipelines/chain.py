"""The chain every pipeline runs: check -> preprocess -> train each method -> evaluate each -> report.

Each step is a library call wrapped in a recorded stage (``imaseg.pipeline.StageRunner``): rerunning
skips what finished, resumes what was interrupted, and reruns what changed.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from imaseg.cache.writer import preprocess_dataset
from imaseg.config import to_dict
from imaseg.data.check import check_dataset, format_report
from imaseg.data.errors import DataError
from imaseg.evaluation.evaluate import evaluate
from imaseg.pipeline import PipelineConfig, StageRunner
from imaseg.report.report import build_report
from imaseg.run import RunDir
from imaseg.summary import Summary
from imaseg.training.trainer import train

__all__ = ["print_summary", "run_chain"]

logger = logging.getLogger("imaseg.pipeline")


def run_chain(data_dir: str | Path, out: Path, config: PipelineConfig, runner: StageRunner, *, title: str) -> dict:
    """Run the whole chain for ``data_dir`` into ``out``; returns the headline numbers per method."""
    cache, runs = out / "cache", out / "runs"

    def check(_resume: bool) -> int:
        report = check_dataset(data_dir, progress=True)
        if not report.ok:
            raise DataError(format_report(report))
        return len(report.cases)

    runner.run("check", {"data": str(data_dir), "files": _data_signature(data_dir)}, check)
    preprocess = config.preprocess
    runner.run(
        "preprocess",
        {"data": str(data_dir), **to_dict(preprocess)},
        lambda _r: preprocess_dataset(data_dir, cache, preprocess).num_samples,
        after=["check"],
    )

    for plan in config.methods:
        source = plan.init_from
        train_config = replace(plan.train, init=str(RunDir(runs / source).last_checkpoint)) if source else plan.train
        runner.run(
            f"train-{plan.name}",
            to_dict(train_config),
            lambda resume, c=train_config, n=plan.name: train(cache, runs / n, c, resume=resume, overwrite=not resume)[
                "epoch"
            ],
            after=["preprocess", *([f"train-{source}"] if source else [])],
        )

    headline = {}
    methods = [plan.name for plan in config.methods]
    for name in methods:
        summary = runner.run(
            f"evaluate-{name}",
            {"run": name, **to_dict(config.evaluate)},
            lambda _r, c=config.evaluate, n=name: _headline(evaluate(runs / n, c)),
            after=[f"train-{name}"],
        )
        headline[name] = summary
    html_path, _ = build_report([runs / m for m in methods], out / "report", title=title)
    return {"report": str(html_path), "methods": headline, "seconds": runner.timings}


def _data_signature(data_dir: str | Path) -> list:
    """Name, size and modification time of every file of the data folder: new or changed data reruns the chain."""
    root = Path(data_dir)
    if not root.is_dir():
        return []
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    )


def _headline(summary: dict) -> dict:
    """The numbers :func:`print_summary` shows, from the evaluation's summary."""
    typed = Summary.from_json(summary)
    return {"clean": typed.clean_global, "robust": typed.robust_dice, "warnings": typed.warnings}


def print_summary(result: dict) -> None:
    """Where the report is and the clean / robust Dice per method (global voxel Dice, mean over classes)."""
    print(f"\nreport: {result['report']}")
    for name, numbers in result["methods"].items():
        if numbers is None:
            continue
        print(f"  {name:<10} clean Dice {numbers['clean']:.3f}")
        for attack, curve in numbers["robust"].items():
            print(f"  {'':<10} {attack:<10} " + "  ".join(f"eps {e}: {d:.3f}" for e, d in curve.items()))
        for warning in numbers.get("warnings", []):
            print(f"  {'':<10} warning: {warning}")
    timings = result.get("seconds") or {}
    if timings:
        print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
