"""The frontier study's report: pooled figures with 95% intervals over patients, paired differences IMA minus
PGD-AT (pooled and fold by fold), the frontier plot and the Markdown tables, from the records file alone.

    python benchmarks/frontier_acdc.py --report     # -> frontier_acdc.json, frontier_acdc.png, frontier_acdc.md
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from frontier_matched import matched  # a sibling module: run as python benchmarks/frontier_acdc.py

from imaseg.metrics.bootstrap import bootstrap_auc, bootstrap_dice, paired_bootstrap_difference
from imaseg.metrics.worst import mean_global_dice
from imaseg.utils.atomic import atomic_write_json, atomic_write_text

__all__ = ["markdown", "plot", "pooled", "write_report"]


def _patients(cases) -> dict[str, str]:
    return {c: c.split("_")[0] for c in cases}  # ACDC: patientNNN_frameMM


def pooled(records: list[dict]) -> dict:
    """Per configuration, over its folds: global Dice with 95% intervals over patients, and paired
    differences IMA minus the best PGD-AT at eps 1."""
    by_setting: dict[str, list[dict]] = {}
    for record in records:
        by_setting.setdefault(record["setting"], []).append(record)
    budgets = sorted({float(k) for r in records for k in r["counts"] if k != "clean"})
    keys = ["clean", *(f"{e:g}" for e in budgets)]
    counts = {
        s: {k: {c: np.asarray(v) for r in rs for c, v in r["counts"][k].items()} for k in keys}
        for s, rs in by_setting.items()
    }
    out: dict = {"methods": {}, "paired": {}}
    for setting, per_key in counts.items():
        entry = {}
        for k, cases in per_key.items():
            patients = _patients(cases)
            total = np.sum(list(cases.values()), axis=0)
            entry[k] = {"dice": float(mean_global_dice(total)), "ci": list(bootstrap_dice(cases, patients))}
        auc, low, high = bootstrap_auc({e: per_key[f"{e:g}"] for e in budgets}, _patients(per_key["clean"]))
        entry["auc"] = {"dice": auc, "ci": [low, high]}  # mean Dice over eps 0.25..2 (summary.json's auc)
        entry["method"] = by_setting[setting][0]["method"]
        entry["folds"] = sorted(r["fold"] for r in by_setting[setting])
        entry["cpu_minutes"] = sum(r["cpu_minutes"] for r in by_setting[setting])
        out["methods"][setting] = entry
    references = [s for s in counts if s.startswith("pgd-at")]
    for setting in [s for s in counts if s.startswith("ima")]:
        for reference in references:
            for k in ("clean", "1"):
                first, second = counts[setting][k], counts[reference][k]
                if set(first) & set(second):
                    out["paired"][f"{setting} - {reference} @ {k}"] = paired_bootstrap_difference(
                        first, second, _patients(first)
                    )
    out["paired_per_fold"] = _paired_per_fold(by_setting, PER_FOLD_REFERENCE)
    out["matched"] = matched(counts, out["methods"], _patients)
    return out


PER_FOLD_REFERENCE = "pgd-at eps 1"  # the best PGD-AT at eps 1 on every fold


def _paired_per_fold(by_setting: dict[str, list[dict]], reference: str) -> dict:
    """Fold by fold, every IMA setting minus ``reference`` (clean and eps 1): does a pooled gain hold on each?"""
    out: dict = {}
    baseline = {r["fold"]: r["counts"] for r in by_setting.get(reference, [])}
    for setting in [s for s in by_setting if s.startswith("ima")]:
        for record in by_setting[setting]:
            if record["fold"] not in baseline:
                continue
            for k in ("clean", "1"):
                first = {c: np.asarray(v) for c, v in record["counts"][k].items()}
                second = {c: np.asarray(v) for c, v in baseline[record["fold"]][k].items()}
                name = f"{setting} - {reference} @ {k} fold {record['fold']}"
                out[name] = paired_bootstrap_difference(first, second, _patients(first))
    return out


# the curves of the plot: the settings joined by a line, in order of their budget
CURVES = {
    "PGD-AT": ["pgd-at eps 0.5", "pgd-at eps 1", "pgd-at eps 1.5"],
    "IMA voxel": ["ima voxel eps_max 1", "ima voxel eps_max 1.5", "ima voxel eps_max 2"],
    # the clean/adversarial weighting: PGD-AT eps 1 at adv_weight 0.5, 0.65, 0.75; the floor at beta 0.3, 0.5
    "PGD-AT eps 1, weight": ["pgd-at eps 1", "pgd-at eps 1 adv_weight 0.65", "pgd-at eps 1 adv_weight 0.75"],
    "IMA floor, beta": ["ima voxel eps_min 1 eps_max 2 beta 0.3", "ima voxel eps_min 1 eps_max 2"],
}
COLOURS = {"std": "black", "pgd-at": "tab:blue", "trades": "tab:orange", "ima": "tab:red"}


def plot(summary: dict, path: Path) -> None:
    """Clean Dice against Dice at eps 1, one point per configuration with its 95% intervals; PGD-AT and IMA
    voxel joined as curves over their budgets, and over the clean/adversarial weight where both weights ran."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.5, 5.5))
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    points = {s: (e["clean"]["dice"], e["1"]["dice"]) for s, e in summary["methods"].items() if "1" in e}
    folds = sorted({f for e in summary["methods"].values() for f in e["folds"]})
    for curve, settings in CURVES.items():
        xy = [points[s] for s in settings if s in points]
        if len(xy) > 1:
            colour = COLOURS["pgd-at" if curve.startswith("PGD-AT") else "ima"]
            axis.plot(*zip(*xy, strict=True), color=colour, alpha=0.5, linewidth=1.5, zorder=1)
    shapes = iter("XDph*P<>8H")
    for setting, (x, y) in points.items():
        entry = summary["methods"][setting]
        method = entry["method"]
        sweep = next((m for m in (CURVES["PGD-AT"], CURVES["IMA voxel"]) if setting in m), None)  # the budgets
        marker = "vo^"[sweep.index(setting)] if sweep else ("s" if "sample" in setting else next(shapes))
        colour = COLOURS.get(method, "grey")
        partial = entry["folds"] != folds  # not yet on every fold: not comparable with the others
        done = entry["folds"]
        name = (
            f"{setting} ({'fold' if len(done) == 1 else 'folds'} {','.join(map(str, done))} only)"
            if partial
            else setting
        )
        axis.errorbar(
            x,
            y,
            xerr=[[x - entry["clean"]["ci"][0]], [entry["clean"]["ci"][1] - x]],
            yerr=[[y - entry["1"]["ci"][0]], [entry["1"]["ci"][1] - y]],
            marker=marker,
            markersize=7,
            color=colour,
            markerfacecolor="white" if method == "ima" and not any(setting in m for m in CURVES.values()) else colour,
            ecolor=colour,
            elinewidth=0.7,
            alpha=0.9,
            capsize=2,
            label=name,
            zorder=2,
        )
    axis.set_xlabel("clean global Dice (95% CI over patients)")
    axis.set_ylabel("global Dice under the default attack, L2 eps 1 (95% CI)")
    axis.set_title(f"ACDC accuracy-robustness frontier, test patients of folds {', '.join(map(str, folds))}")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="lines: budget and weight sweeps")
    figure.savefig(path, dpi=130, bbox_inches="tight")


def _cell(entry: dict) -> str:
    return f"{entry['dice']:.3f} ({entry['ci'][0]:.3f}-{entry['ci'][1]:.3f})"


def _difference(pair: dict) -> str:
    return f"{pair['difference']:+.3f} ({pair['low']:+.3f}..{pair['high']:+.3f})"


def markdown(summary: dict) -> str:
    """The pooled table (one row per configuration, with its folds), the paired table (every IMA setting
    minus PGD-AT eps 1: pooled, then eps 1 fold by fold) and the matched-clean table (``matched``)."""
    methods = summary["methods"]
    budgets = sorted({k for e in methods.values() for k in e if k[0].isdigit()}, key=float)
    lines = [
        "| configuration | folds | clean | " + " | ".join(f"eps {b}" for b in budgets) + " | AUC | CPU min |",
        "|---|---|---|" + "---|" * len(budgets) + "---|---|",
    ]
    for setting, entry in methods.items():
        robust = [(_cell(entry[b]) if b == "1" else f"{entry[b]['dice']:.3f}") for b in budgets]
        folds = ",".join(map(str, entry["folds"]))
        row = [setting, folds, _cell(entry["clean"]), *robust, _cell(entry["auc"]), f"{entry['cpu_minutes']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    reference = PER_FOLD_REFERENCE
    folds = sorted({f for e in methods.values() for f in e["folds"]})
    lines += [
        "",
        f"| minus {reference}, paired | clean, pooled | eps 1, pooled | "
        + " | ".join(f"eps 1, fold {f}" for f in folds)
        + " |",
        "|---|---|---|" + "---|" * len(folds),
    ]
    paired, per_fold = summary["paired"], summary.get("paired_per_fold", {})
    for setting in [s for s in methods if s.startswith("ima")]:
        pooled_pair = [paired.get(f"{setting} - {reference} @ {k}") for k in ("clean", "1")]
        if None in pooled_pair:
            continue
        each = [per_fold.get(f"{setting} - {reference} @ 1 fold {f}") for f in folds]
        cells = [_difference(p) for p in pooled_pair] + [_difference(p) if p else "-" for p in each]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    rows = summary.get("matched", [])
    if rows:
        lines += [
            "",
            "| IMA setting | PGD-AT frontier at its clean Dice | clean, paired | eps 1, paired | dominates? |",
            "|---|---|---|---|---|",
        ]
    for row in rows:
        cells = [row["setting"], row["reference"], _difference(row["clean"]), _difference(row["1"]), row["dominates"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(records: list[dict], results: Path) -> str:
    """Pool ``records`` into ``results``: ``frontier_acdc.json`` (records and pooled figures), the plot and the
    Markdown tables; returns the tables."""
    summary = pooled(records) if records else {"methods": {}, "paired": {}}
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / "frontier_acdc.json", {"records": records, **summary})
    if not summary["methods"]:
        return "no finished cells yet"
    plot(summary, results / "frontier_acdc.png")
    tables = markdown(summary)
    atomic_write_text(results / "frontier_acdc.md", tables)
    return tables
