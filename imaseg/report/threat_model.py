"""The box at the top of a report: the threat model, what a budget means, the data, and each run's training
history, read from the run folders (summary.json, config.yaml, log.csv) alone."""

from __future__ import annotations

import math

from imaseg.report.collect import RunData
from imaseg.report.document import Document
from imaseg.run import RunDir
from imaseg.utils.units import PHYSICAL_UNITS, budget_psnr

POSTPROCESS_WORDS = {
    "lcc": "per class, only the largest connected component is kept",
    "lcc2": "per class, only the two largest connected components are kept",
}

__all__ = ["threat_model_box", "training_history"]


def threat_model_box(doc: Document, runs: list[RunData]) -> None:
    """Threat model, budget meaning and data of the first evaluated run (they share them in a comparison)."""
    evaluated = [r for r in runs if r.summary]
    if not evaluated:
        return
    summary = evaluated[0].evaluation
    settings, facts = summary.settings, summary.facts
    doc.heading("Threat model and data")
    members = "; ".join(f"{name}: {text}" for name, text in facts.attack_descriptions.items())
    clip = settings.clip_range
    doc.paragraph(
        f"White-box attacker with full access to the weights and gradients, per-sample budget, "
        f"{settings.steps} steps, {settings.restarts} restart(s), seed {settings.seed}, "
        f"{f'inputs clipped to {clip}' if clip else 'inputs not clipped (the model declares no input range)'}. "
        f"Attacks: {members or ', '.join(summary.attacks)}."
    )
    over = "each 2D slice (the model's input)" if (facts.spatial_dims or 2) == 2 else "the whole 3D volume"
    size = facts.spatial_size
    rms = ""
    if size:
        voxels = math.prod(int(s) for s in size)
        rms = f" (an L2 budget of 1 is a per-voxel RMS of {1 / math.sqrt(voxels):.4f} over {voxels} voxels"
        if clip and voxels:
            psnr = budget_psnr(1 / math.sqrt(voxels), clip[1] - clip[0])
            rms += f", a PSNR of {psnr:.1f} dB for the range {clip}"
        rms += ")"
    unit = settings.eps_unit
    meaning = (
        f"per-voxel RMS (the L2 budget of a sample is eps times the square root of its voxel count; L2 over {over})"
        if unit == "rms"
        else f"L2 over {over}{rms}"
    )
    physical = "".join(
        f" {name}: eps is the {PHYSICAL_UNITS[name.rpartition('-')[2]]}."
        for name in summary.attacks
        if name.rpartition("-")[2] in PHYSICAL_UNITS
    )
    doc.paragraph(
        f"Budgets (eps) are in model-input units: {meaning}, Linf per voxel. Source units: results.csv column "
        "eps_source (intensity scale of the preprocessing undone)."
        + (f" Physical threat models state their budgets in their own units:{physical}" if physical else "")
    )
    if settings.postprocess != "none":
        doc.paragraph(
            f"Predictions post-processed with {settings.postprocess} ({POSTPROCESS_WORDS.get(settings.postprocess, '')})"
            " before scoring, clean and attacked alike; the attacks optimise the raw logits."
        )
    patients = facts.patients
    doc.paragraph(
        f"Data: modality {facts.modality or '?'}, intensity {facts.intensity or '?'}, model input "
        f"{'x'.join(map(str, size)) if size else 'each case at its own preprocessed size'}; evaluated on "
        f"{len(facts.cases)} case(s){f' of {patients} patient(s)' if patients else ''} held out from training."
    )
    for run in runs:
        doc.paragraph(f"{run.name}: {training_history(run)}", "note")


def training_history(run: RunData) -> str:
    """``trained N epochs (M min)``, and for a fine-tuned run the run it started from, with the totals."""
    init = (run.config.get("train") or {}).get("init")
    if not run.log and not init:
        return f"{run.method}: trained outside imaseg's training command (no training log in its run folder)."
    own_minutes = sum(float(row.get("seconds") or 0) for row in run.log) / 60
    if (run.config.get("train") or {}).get("nnunet"):
        return f"{run.method}: its nnU-Net checkpoint logs {len(run.log)} epoch(s) ({own_minutes:.1f} CPU/GPU min)."
    text = f"{run.method} trained {len(run.log)} epoch(s) ({own_minutes:.1f} CPU/GPU min)"
    if not init:
        return text + " from scratch."
    source = RunDir.of_checkpoint(init)
    source_log = source.read_log()
    label = source.name
    if source.is_run():
        described = source.read_config().get("method") or {}
        label = f"{source.name} ({described.get('label', '?')})"
    minutes = sum(float(row.get("seconds") or 0) for row in source_log) / 60
    total = len(run.log) + len(source_log)
    return (
        f"{text}, fine-tuned from {label} after its {len(source_log)} epoch(s) ({minutes:.1f} min): "
        f"{total} epochs and {own_minutes + minutes:.1f} min in all."
    )
