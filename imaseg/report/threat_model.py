"""The box at the top of a report: the threat model, what a budget means, the data, and each run's training
history, read from the run folders (summary.json, config.yaml, log.csv) alone."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import yaml

from imaseg.report.collect import RunData
from imaseg.report.document import Document
from imaseg.utils.units import budget_psnr

__all__ = ["threat_model_box", "training_history"]


def threat_model_box(doc: Document, runs: list[RunData]) -> None:
    """Threat model, budget meaning and data of the first evaluated run (they share them in a comparison)."""
    evaluated = [r for r in runs if r.summary]
    if not evaluated:
        return
    summary = evaluated[0].evaluation
    settings = summary["settings"]
    doc.heading("Threat model and data")
    attacks = summary.get("attack_descriptions") or {}
    members = "; ".join(f"{name}: {text}" for name, text in attacks.items()) or ", ".join(summary["attacks"])
    clip = settings.get("clip_range") or "none"
    doc.paragraph(
        f"White-box attacker with full access to the weights and gradients, per-sample budget, "
        f"{settings['steps']} steps, {settings['restarts']} restart(s), seed {settings['seed']}, inputs clipped to "
        f"{clip}. Attacks: {members}."
    )
    dims = summary.get("spatial_dims", 2)
    over = "each 2D slice (the model's input)" if dims == 2 else "the whole 3D volume"
    size = summary.get("spatial_size")
    rms = ""
    if size:
        voxels = math.prod(int(s) for s in size)
        rms = f" (an L2 budget of 1 is a per-voxel RMS of {1 / math.sqrt(voxels):.4f} over {voxels} voxels"
        if isinstance(clip, list) and len(clip) == 2 and voxels:
            psnr = budget_psnr(1 / math.sqrt(voxels), clip[1] - clip[0])
            rms += f", a PSNR of {psnr:.1f} dB for the range {clip}"
        rms += ")"
    unit = settings.get("eps_unit", "l2")
    meaning = (
        f"per-voxel RMS (the L2 budget of a sample is eps times the square root of its voxel count; L2 over {over})"
        if unit == "rms"
        else f"L2 over {over}{rms}"
    )
    doc.paragraph(
        f"Budgets (eps) are in model-input units: {meaning}, Linf per voxel. Source units: results.csv column "
        "eps_source (intensity scale of the preprocessing undone)."
    )
    cases = summary.get("cases", [])
    patients = summary.get("patients")
    doc.paragraph(
        f"Data: modality {summary.get('modality') or '?'}, intensity {summary.get('intensity') or '?'}, model input "
        f"{'x'.join(map(str, size)) if size else 'each case at its own preprocessed size'}; evaluated on {len(cases)} case(s)"
        f"{f' of {patients} patient(s)' if patients else ''} held out from training."
    )
    for run in runs:
        doc.paragraph(f"{run.name}: {training_history(run)}", "note")


def _log(run_dir: Path) -> list[dict]:
    path = run_dir / "log.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def training_history(run: RunData) -> str:
    """``trained N epochs (M min)``, and for a fine-tuned run the run it started from, with the totals."""
    own_minutes = sum(float(row.get("seconds") or 0) for row in run.log) / 60
    text = f"{run.method} trained {len(run.log)} epoch(s) ({own_minutes:.1f} CPU/GPU min)"
    init = (run.config.get("train") or {}).get("init")
    if not init:
        return text + " from scratch."
    source = Path(init).parent.parent  # RUN/checkpoints/last.pt -> RUN
    source_log = _log(source)
    label = source.name
    config = source / "config.yaml"
    if config.is_file():
        described = (yaml.safe_load(config.read_text()) or {}).get("method") or {}
        label = f"{source.name} ({described.get('label', '?')})"
    minutes = sum(float(row.get("seconds") or 0) for row in source_log) / 60
    total = len(run.log) + len(source_log)
    return (
        f"{text}, fine-tuned from {label} after its {len(source_log)} epoch(s) ({minutes:.1f} min): "
        f"{total} epochs and {own_minutes + minutes:.1f} min in all."
    )
