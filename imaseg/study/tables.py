"""The Markdown tables of a study report, from :func:`imaseg.study.pooling.pooled`'s figures. No torch here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from imaseg.study.pooling import unit_label
from imaseg.study.report_config import Comparison, ReportSettings

__all__ = ["markdown"]


def _cell(entry: dict) -> str:
    return f"{entry['dice']:.3f} ({entry['ci'][0]:.3f}-{entry['ci'][1]:.3f})"


def _difference(pair: dict) -> str:
    return f"{pair['difference']:+.3f} ({pair['low']:+.3f}..{pair['high']:+.3f})"


def _pooled_table(methods: dict, budget: str) -> list[str]:
    """One row per configuration with its folds; intervals on clean Dice, the report's budget and the AUC, whose
    header names its range: the attacked budgets, first to last (clean Dice is not in it)."""
    budgets = sorted({k for e in methods.values() for k in e if k[0].isdigit()}, key=float)
    area = f"AUC {budgets[0]}..{budgets[-1]}" if len(budgets) > 1 else "AUC"
    lines = [
        "| configuration | folds | clean | " + " | ".join(f"eps {b}" for b in budgets) + f" | {area} | CPU min |",
        "|---|---|---|" + "---|" * len(budgets) + "---|---|",
    ]
    for setting, entry in methods.items():
        robust = [(_cell(entry[b]) if b == budget else f"{entry[b]['dice']:.3f}") for b in budgets]
        folds = ",".join(map(str, entry["folds"]))
        auc = _cell(entry["auc"]) if "auc" in entry else "-"  # a single budget has no area
        row = [setting, folds, _cell(entry["clean"]), *robust, auc, f"{entry['cpu_minutes']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _units(summary: dict, compare: Comparison, budget: str) -> list[str]:
    """The per-fold columns: every fold, or every (fold, seed) of the paired-by-fold keys with several seeds."""
    folds = sorted({f for e in summary["methods"].values() for f in e["folds"]})
    prefixes = [f"{s} - {compare.against_setting} @ {budget} " for s in summary["methods"]]
    found = {k[len(p) :] for k in summary.get("paired_per_fold", {}) for p in prefixes if k.startswith(p)}
    if not any("seed" in unit for unit in found):
        return [unit_label(f, 0, False) for f in folds]
    return sorted(found, key=lambda unit: [int(p) for p in unit.split() if p.isdigit()])


def _paired_table(summary: dict, compare: Comparison, budget: str) -> list[str]:
    """Every compared configuration minus ``against_setting``: pooled, then at the budget fold by fold."""
    reference = compare.against_setting
    if reference is None:
        return []
    methods = summary["methods"]
    units = _units(summary, compare, budget)
    lines = [
        "",
        f"| minus {reference}, paired | clean, pooled | eps {budget}, pooled | "
        + " | ".join(f"eps {budget}, {u}" for u in units)
        + " |",
        "|---|---|---|" + "---|" * len(units),
    ]
    paired, per_fold = summary["paired"], summary.get("paired_per_fold", {})
    for setting in [s for s in methods if methods[s]["method"] == compare.method]:
        pooled_pair = [paired.get(f"{setting} - {reference} @ {k}") for k in ("clean", budget)]
        if None in pooled_pair:
            continue
        each = [per_fold.get(f"{setting} - {reference} @ {budget} {u}") for u in units]
        cells = [_difference(p) for p in pooled_pair if p is not None] + [_difference(p) if p else "-" for p in each]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return lines


def _matched_table(rows: list[dict], compare: Comparison, budget: str) -> list[str]:
    """:func:`imaseg.study.matched.matched`'s rows: global Dice differences and the verdict on them, then the same
    comparison in mean per-case Dice (against the same reference counts)."""
    if not rows:
        return []
    lines = [
        "",
        f"| {compare.label} setting | {compare.against_label} frontier at its clean Dice | clean, paired "
        f"| eps {budget}, paired | dominates? | clean, case mean, paired | eps {budget}, case mean, paired |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            row["setting"],
            row["reference"],
            _difference(row["clean"]),
            _difference(row[budget]),
            row["dominates"],
            _difference(row["clean_case"]),
            _difference(row[f"{budget}_case"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cells_table(records: Sequence[Mapping[str, Any]], budget: str) -> list[str]:
    """Cell by cell (records of cells run by the harness): per-case clean Dice, every attack at the budget, the
    epochs the log holds and seconds per epoch."""
    cells = [r for r in records if "training" in r]
    if not cells:
        return []
    attacks = list(dict.fromkeys(a for r in cells for a in r.get("attacks", {})))
    lines = [
        "",
        "| cell | clean, case mean | " + " | ".join(f"{a} eps {budget}" for a in attacks) + " | epochs | s/epoch |",
        "|---|---|" + "---|" * len(attacks) + "---|---|",
    ]
    for record in cells:
        robust = [record.get("attacks", {}).get(a, {}).get(budget) for a in attacks]
        training = record["training"]
        per_epoch = training.get("seconds_per_epoch")
        row = [
            f"{record['setting']} fold {record['fold']} seed {record['seed']}",
            f"{record.get('clean_case', float('nan')):.3f}",
            *("-" if d is None else f"{d:.3f}" for d in robust),
            str(training.get("epochs_run", "-")),
            "-" if per_epoch is None else f"{per_epoch:.1f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(summary: dict, settings: ReportSettings, records: Sequence[Mapping[str, Any]] = ()) -> str:
    """The pooled table (one row per configuration, with its folds); with ``settings.compare``, the paired table
    (every compared configuration minus ``against_setting``: pooled, then fold by fold) and the matched-clean
    table (:func:`imaseg.study.matched.matched`: global Dice, then mean per-case Dice); with ``records`` of cells
    the harness ran, a table of each cell's per-case clean Dice, every attack at the budget, its epochs and
    seconds per epoch."""
    budget = settings.budget_key
    lines = _pooled_table(summary["methods"], budget)
    if settings.compare is not None:
        lines += _paired_table(summary, settings.compare, budget)
        lines += _matched_table(summary.get("matched", []), settings.compare, budget)
    lines += _cells_table(records, budget)
    return "\n".join(lines) + "\n"
