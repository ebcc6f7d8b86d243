"""``imaseg report RUN [RUN ...]``: one HTML file (plots embedded) and a Markdown twin comparing runs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from imaseg.report import plots
from imaseg.report.collect import RunData, collect_run
from imaseg.report.diagnostics import checks_section, margins_section
from imaseg.report.document import Document
from imaseg.report.threat_model import threat_model_box
from imaseg.run import RunDir
from imaseg.summary import CellSummary, Summary
from imaseg.utils.units import budget_psnr

__all__ = ["build_report"]

# Cited when used: a data set by a word of its name, a method by its attack kind or training method.
DATA_CITATIONS = {
    "acdc": "ACDC (Bernard et al., IEEE TMI 2018)",
    "montgomery": "Montgomery and Shenzhen chest X-rays (Jaeger et al. 2014)",
    "shenzhen": "Montgomery and Shenzhen chest X-rays (Jaeger et al. 2014)",
    "chest x-ray": "Montgomery and Shenzhen chest X-rays (Jaeger et al. 2014)",
}


def _citations(runs: list[RunData]) -> str:
    """The references of what these runs used: their data sets (by name), and the attacks and training
    methods as evaluation and training recorded their citations."""
    data, methods = [], []
    for run in runs:
        facts = run.summary.facts if run.summary else None
        name = str((facts.dataset if facts else None) or "").lower()
        data += [text for key, text in DATA_CITATIONS.items() if key in name]
        methods += list(facts.citations) if facts else []
        cited = (run.config.get("method") or {}).get("citation")
        methods += [cited] if cited else []
    parts = []
    if data:
        parts.append("Data: " + "; ".join(dict.fromkeys(data)) + ".")
    if methods:
        parts.append("Methods: " + "; ".join(dict.fromkeys(methods)) + ".")
    return " ".join(parts)


def _main_attack(runs: list[RunData]) -> str | None:
    """The headline attack an evaluation chose (its summary's main attack), else the first evaluated."""
    for r in runs:
        if r.summary and r.summary.facts.main_attack in r.summary.attacks:
            return r.summary.facts.main_attack
    names = [a for r in runs if r.summary for a in r.summary.attacks]
    return names[0] if names else None


def _describe_attack(summary: Summary, attack: str) -> str:
    """The attack in words, as the evaluation described it (from the attack registry) in its summary."""
    s = summary.settings
    how = summary.facts.attack_descriptions.get(attack, "")
    clip = f"clip range {s.clip_range}" if s.clip_range else "not clipped"
    return f"{attack}: {how + ', ' if how else ''}seed {s.seed}, {clip}"


def build_report(
    run_dirs: list[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    *,
    tag: str = "default",
    title: str | None = None,
) -> tuple[Path, Path]:
    """Render the report of ``run_dirs`` (their ``eval/TAG``) to ``OUT.html`` / ``OUT.md``."""
    runs = [collect_run(d, tag) for d in run_dirs]
    names = [r.name for r in runs]
    for run in runs:  # runs/a/seed0 vs runs/b/seed0: tell them apart (tables, and the figures' file names)
        if names.count(run.name) > 1:
            run.name = f"{run.path.resolve().parent.name}-{run.name}"
    if out is None:
        out = Path(run_dirs[0]) / "report" if len(runs) == 1 else Path(run_dirs[0]).parent / "report"
    doc = Document(title or f"Robustness report: {', '.join(r.name for r in runs)}")
    doc.paragraph(f"Generated {time.strftime('%Y-%m-%d %H:%M')} by imaseg from {len(runs)} run(s).", "note")
    threat_model_box(doc, runs)
    _runs_table(doc, runs)
    evaluated = [r for r in runs if r.summary]
    attack = _main_attack(evaluated)
    if attack:
        _headline(doc, evaluated, attack)
        _curves(doc, evaluated)
        _per_case(doc, evaluated, attack)
        _endpoint_errors(doc, evaluated, attack)
        checks_section(doc, evaluated)
    else:
        where = RunDir("RUN").evaluation(tag).summary_path.as_posix()
        doc.paragraph(f"No evaluation found ({where}): run `imaseg evaluate --run RUN` first.", "warn")
    if any(r.log for r in runs):
        doc.heading("Training")
        doc.image(
            "training",
            plots.training_curves(runs),
            "Training loss and validation Dice per epoch (validation "
            "side of the split; the attacked curve uses the cheap per-epoch soft-Dice PGD; an nnU-Net run shows the "
            "pseudo Dice nnU-Net logs on its validation patches).",
        )
    for run in runs:
        if run.margins and run.margins.get("epochs"):
            margins_section(doc, run)
    if any(run.overlays for run in evaluated):
        doc.heading("Overlays")
    for run in evaluated:
        for case, overlay in run.overlays.items():
            doc.image(
                f"overlay_{run.name}_{case}",
                plots.overlay_figure(overlay, run.name),
                "Each case at the slice where the attacks lower Dice most. Class colours and names from the data "
                "set (legend); errors against the ground truth in red (missed or wrong class) and yellow (false "
                "alarm); Dice per panel over the classes present in it. The perturbation is amplified to its own "
                "maximum; the attacked image is shown at the image's own grey scale. The flip norm along the attack "
                "path (an upper bound on the distance to the decision boundary) is the perturbation norm at which the "
                "voxel's predicted class first changed, from 0 to the budget; light blue: never flipped. Noise "
                "baselines are left out (their panels are flat).",
            )
    doc.heading("Notes")
    doc.paragraph(
        "Budgets are in the units of the model input (after preprocessing). For L2 the norm is over the whole "
        "attacked sample (a 2D slice, or a 3D volume); 'eps RMS' divides it by the square root of the number of "
        "voxels, and 'eps source' maps it back to the source intensity units where the map is linear.",
        "note",
    )
    if evaluated:
        for name, text in evaluated[0].evaluation.aggregations.items():
            doc.paragraph(f"Dice '{name}': {text}.", "note")
    citations = _citations(runs)
    if citations:
        doc.paragraph(citations, "note")
    return doc.write(out)


def _runs_table(doc: Document, runs: list[RunData]) -> None:
    doc.heading("Runs")
    rows = []
    for r in runs:
        t = r.config.get("train", {})
        settings = r.method_settings
        epochs, minutes = "-", "-"  # trained outside imaseg's training command: no log
        if r.log:
            epochs, minutes = str(len(r.log)), f"{np.nansum([row.get('seconds', np.nan) for row in r.log]) / 60:.1f}"
        rows.append([r.name, r.method, settings, epochs, minutes, t.get("seed", "")])
    doc.table(["run", "method", "settings", "epochs", "train minutes", "seed"], rows)


def _headline(doc: Document, runs: list[RunData], attack: str) -> None:
    doc.heading(f"Clean and robust Dice ({attack})")
    entries = [(r, r.evaluation.attacks[attack]) for r in runs if r.evaluation.attacks.get(attack)]
    by_label = {f"{e:g}": e for _, entry in entries for e, _ in entry.attacked()}  # eps 0 repeats clean
    eps = sorted(by_label.values())
    span = (entries[0][1].eps[0], entries[0][1].eps[-1])
    rows = []
    for r, entry in entries:
        shown = {f"{e:g}": _with_ci(c) for e, c in entry.attacked()}
        auc: str | float = entry.auc
        if (entry.eps[0], entry.eps[-1]) != span:  # another range: not comparable with the first run's
            auc = f"{entry.auc:.3f} (eps {entry.eps[0]:g}..{entry.eps[-1]:g})"
        rows.append([r.name, r.method, _with_ci(r.evaluation.clean), *[shown.get(f"{e:g}", "-") for e in eps], auc])
    doc.table(
        ["run", "method", "clean", *[f"eps {e:g}" for e in eps], "AUC"],
        rows,
        caption="Global voxel Dice, mean over foreground classes, with its 95% bootstrap interval over patients "
        "('-': not scored at that budget). AUC: area under Dice-vs-eps divided by the eps range (a run scored "
        "over another range says which).",
    )
    doc.paragraph(_describe_attack(runs[0].evaluation, attack), "note")


def _endpoint_errors(doc: Document, runs: list[RunData], attack: str) -> None:
    """Mean absolute error of each clinical endpoint (structure sizes; EF, volumes, mass for cardiac data)."""
    runs = [r for r in runs if r.evaluation.endpoints and r.evaluation.endpoints.mean_abs_error]
    if not runs:
        return
    doc.heading("Clinical endpoints")
    for r in runs:
        endpoints = r.evaluation.endpoints
        if endpoints is None:  # filtered above
            continue
        entry = r.evaluation.attacks.get(attack)
        budgets = [e for e, _ in entry.attacked()] if entry else []
        columns = [endpoints.errors(), *[endpoints.errors(attack, e) for e in budgets]]
        rows = [[name, *[column.get(name, float("nan")) for column in columns]] for name in columns[0]]
        doc.table(
            ["endpoint", "clean", *[f"eps {e:g}" for e in budgets]],
            rows,
            caption=f"{r.name}: mean absolute error against the ground truth (mL, cm², EF points, g) under "
            f"{attack}; per subject in endpoints.csv.",
        )


def _with_ci(cell: CellSummary) -> str | float:
    value, interval = cell.global_dice, cell.interval
    if interval is None or value != value:
        return value
    return f"{value:.3f} ({interval[0]:.3f}-{interval[1]:.3f})"


def _noise_note(doc: Document, runs: list[RunData], noise: set[str]) -> None:
    """Noise baselines in one line instead of flat panels: the largest Dice change they caused."""
    for r in runs:
        clean = r.evaluation.clean_global
        for name in sorted(noise & set(r.evaluation.attacks)):
            cells = r.evaluation.attacks[name].cells
            change = max((abs(c.global_dice - clean) for c in cells), default=float("nan"))
            doc.paragraph(
                f"{r.name}: {name} (same-budget random noise, a baseline) moved global Dice by at most {change:.3f} "
                "at any budget; its curves are flat and not drawn.",
                "note",
            )


def _curves(doc: Document, runs: list[RunData]) -> None:
    noise = {a for r in runs for a in r.evaluation.facts.noise_attacks}
    attacks = sorted({a for r in runs for a in r.evaluation.attacks} - noise)
    doc.heading("Dice and HD95 against the budget")
    _noise_note(doc, runs, noise)
    for attack in attacks:
        doc.image(f"dice_{attack}", plots.dice_vs_eps(runs, attack), _describe_attack(runs[0].evaluation, attack))
    for attack in attacks:
        if any(
            np.isfinite(np.array([c.hd95 for c in r.evaluation.attacks[attack].cells], dtype=float)).any()
            for r in runs
            if attack in r.evaluation.attacks
        ):
            doc.image(
                f"hd95_{attack}", plots.hd95_vs_eps(runs, attack), f"HD95 per class under {attack} (lower is better)."
            )
    for r in runs:
        _dice_table(doc, r)


def _dice_table(doc: Document, r: RunData) -> None:
    """One aggregation: global voxel Dice per class and their mean (the headline), per attack and budget."""
    summary = r.evaluation
    clip = summary.settings.clip_range
    width = float(clip[1] - clip[0]) if clip else None
    rows = [["clean", "", *summary.clean.class_dice(), summary.clean_global]]
    for attack, entry in summary.attacks.items():
        for e, cell in entry.attacked():
            psnr = budget_psnr(cell.eps_rms, width)
            budget = f"{e:g} (rms {cell.eps_rms:.2g}" + (f", PSNR {psnr:.0f} dB)" if psnr == psnr else ")")
            rows.append([attack, budget, *cell.class_dice(), cell.global_dice])
    doc.table(
        ["attack", "eps", *summary.class_names, "mean"],
        rows,
        caption=f"{r.name}: global voxel Dice per class and their mean over classes (the headline number). PSNR: "
        "a lower bound for the attacked image, over the clip range.",
    )


def _per_case(doc: Document, runs: list[RunData], attack: str) -> None:
    doc.heading("Per case")
    for r in runs:
        entry = r.evaluation.attacks.get(attack)
        if not entry or not r.results:
            continue
        middle = entry.eps[len(entry.eps) // 2]
        table: dict[str, dict] = {}
        for row in r.results:
            key = row["case"]
            if row["attack"] == "clean":
                table.setdefault(key, {}).setdefault("clean", []).append(row["dice"])
            elif row["attack"] == attack and abs(float(row["eps"]) - middle) < 1e-9:
                table.setdefault(key, {}).setdefault("attacked", []).append(row["dice"])
        rows = [
            [case, float(np.nanmean(v.get("clean", [np.nan]))), float(np.nanmean(v.get("attacked", [np.nan])))]
            for case, v in sorted(table.items())
        ]
        doc.table(
            ["case", "clean Dice", f"{attack} eps {middle:g}"],
            rows,
            caption=f"{r.name}: per-case Dice, mean over classes present.",
        )
