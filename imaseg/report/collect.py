"""Reading what a run folder holds for the report: config, training log, margins, evaluation results.

The report layer reads files only (no model, no torch), so it renders any run anywhere.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imaseg.run import RunDir
from imaseg.summary import Summary

__all__ = ["RunData", "collect_run"]


@dataclass
class RunData:
    path: Path
    name: str
    config: dict
    log: list[dict] = field(default_factory=list)
    margins: dict | None = None
    summary: Summary | None = None
    results: list[dict] = field(default_factory=list)
    overlays: dict[str, dict] = field(default_factory=dict)

    @property
    def evaluation(self) -> Summary:
        """``summary`` of a run known to be evaluated (the report passes on only runs with a summary)."""
        if self.summary is None:
            raise RuntimeError(f"{self.name}: no evaluation summary")
        return self.summary

    @property
    def method(self) -> str:
        """The method's label as training recorded it in ``config.yaml`` (its name for older runs)."""
        described = self.config.get("method") or {}
        return str(described.get("label") or str(self.config.get("train", {}).get("method", "?")).upper())

    @property
    def method_settings(self) -> str:
        """The method's own hyper-parameters in a few words, as training recorded them."""
        return str((self.config.get("method") or {}).get("settings", ""))


def collect_run(run_dir: str | os.PathLike[str], tag: str = "default", name: str | None = None) -> RunData:
    """Load the pieces of ``run_dir`` that exist; raises FileNotFoundError if it is not a run folder."""
    run = RunDir(run_dir).require()
    data = RunData(run.path, name or run.name, run.read_config())
    data.log = [{k: _number(v) for k, v in row.items()} for row in run.read_log()]
    data.margins = run.read_margins()
    evaluation = run.evaluation(tag)
    if evaluation.has_summary():
        data.summary = evaluation.read_summary()
    data.results = [{k: _number(v) for k, v in row.items()} for row in evaluation.read_results()]
    overlays = evaluation.overlays_dir
    for overlay in sorted(overlays.glob("*.npz")) if overlays.is_dir() else []:
        with np.load(overlay, allow_pickle=False) as arrays:
            content = {k: arrays[k] for k in arrays.files if k != "meta"}
            content["meta"] = json.loads(str(arrays["meta"]))
        data.overlays[overlay.stem] = content
    return data


def _number(value: str):
    if value is None or value == "":
        return float("nan")
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value
