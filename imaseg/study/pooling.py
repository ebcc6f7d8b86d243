"""Pooled figures of a study's records: per configuration over its folds, with 95% intervals over patients,
and paired differences of the compared method's configurations against the reference method's.

Patients are the resampling unit (:mod:`imaseg.metrics.bootstrap`); which case belongs to which patient
comes from the records (``StudyRecords.patients``, read from the cache manifest when the cell ran). With
several seeds, a case of each seed is its own observation of its patient. No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from imaseg.metrics.bootstrap import bootstrap_auc, bootstrap_dice, paired_bootstrap_difference
from imaseg.metrics.worst import mean_global_dice
from imaseg.study.matched import Counts, matched
from imaseg.study.report_config import Comparison, ReportSettings

__all__ = ["pooled", "unit_label"]

RECORD_FIELDS = ("setting", "method", "fold", "seed", "cpu_minutes", "counts")  # what pooling reads

Record = Mapping[str, Any]


def _by_setting(records: Sequence[Record]) -> dict[str, list[Record]]:
    by_setting: dict[str, list[Record]] = {}
    for record in records:
        by_setting.setdefault(record["setting"], []).append(record)
    return by_setting


def unit_label(fold: int, seed: int, several_seeds: bool) -> str:
    """How the paired-by-fold keys name a (fold, seed): ``"fold 0"``, or ``"fold 0 seed 1"`` with several seeds."""
    return f"fold {fold} seed {seed}" if several_seeds else f"fold {fold}"


class _Cases:
    """Case keys of pooled counts (``case``, or ``case seedS`` with several seeds) and their patients."""

    def __init__(self, records: Sequence[Record], patients: Mapping[str, str]) -> None:
        self.several_seeds = len({r["seed"] for r in records}) > 1
        self.patients = dict(patients)

    def key(self, case: str, seed: int) -> str:
        if not self.several_seeds:
            return case
        key = f"{case} seed{seed}"
        self.patients[key] = self.patients[case]
        return key

    def counts(self, record: Record, key: str) -> dict[str, np.ndarray]:
        return {self.key(c, record["seed"]): np.asarray(v) for c, v in record["counts"][key].items()}


def _entry(per_key: Counts, budgets: list[float], patients: Mapping[str, str], records: list[Record]) -> dict:
    entry: dict[str, Any] = {}
    for k, cases in per_key.items():
        total = np.sum(list(cases.values()), axis=0)
        entry[k] = {"dice": float(mean_global_dice(total)), "ci": list(bootstrap_dice(cases, patients))}
    if len(budgets) > 1:  # mean Dice over the budgets (summary.json's auc)
        auc, low, high = bootstrap_auc({e: per_key[f"{e:g}"] for e in budgets}, patients)
        entry["auc"] = {"dice": auc, "ci": [low, high]}
    entry["method"] = records[0]["method"]
    entry["folds"] = sorted(r["fold"] for r in records)
    entry["cpu_minutes"] = sum(r["cpu_minutes"] for r in records)
    return entry


def _paired(counts: dict[str, Counts], methods: dict, compare: Comparison, budget: str, patients) -> dict:
    """Every configuration of the compared method minus every one of the reference method, pooled."""
    out = {}
    references = [s for s in counts if methods[s]["method"] == compare.against]
    for setting in [s for s in counts if methods[s]["method"] == compare.method]:
        for reference in references:
            for k in ("clean", budget):
                first, second = counts[setting][k], counts[reference][k]
                if set(first) & set(second):
                    out[f"{setting} - {reference} @ {k}"] = paired_bootstrap_difference(first, second, patients)
    return out


def _paired_per_fold(by_setting: dict[str, list[Record]], compare: Comparison, budget: str, cases: _Cases) -> dict:
    """Fold by fold, every compared configuration minus ``against_setting``: does a pooled gain hold on each?"""
    reference = compare.against_setting
    if reference is None:
        return {}
    out: dict = {}
    baseline = {(r["fold"], r["seed"]): r for r in by_setting.get(reference, [])}
    for setting in [s for s, rs in by_setting.items() if rs[0]["method"] == compare.method]:
        for record in by_setting[setting]:
            other = baseline.get((record["fold"], record["seed"]))
            if other is None:
                continue
            unit = unit_label(record["fold"], record["seed"], cases.several_seeds)
            for k in ("clean", budget):
                first, second = cases.counts(record, k), cases.counts(other, k)
                out[f"{setting} - {reference} @ {k} {unit}"] = paired_bootstrap_difference(
                    first, second, cases.patients
                )
    return out


def pooled(records: Sequence[Record], patients: Mapping[str, str], settings: ReportSettings) -> dict:
    """Per configuration over its folds: global Dice (clean and at every budget) with 95% intervals over
    patients, the area under Dice-vs-eps, method, folds and CPU minutes; with ``settings.compare``, the paired
    differences (pooled and fold by fold) and the comparison at matched clean Dice
    (:func:`imaseg.study.matched.matched`).

    Args:
        records: the cells' records (``StudyRecords.records()``).
        patients: case -> patient.
        settings: the study's report settings (the budget of the paired tables, the comparison).
    """
    if not records:
        return {"methods": {}, "paired": {}, "paired_per_fold": {}, "matched": []}
    _check_fields(records)
    by_setting = _by_setting(records)
    budgets = sorted({float(k) for r in records for k in r["counts"] if k != "clean"})
    keys = ["clean", *(f"{e:g}" for e in budgets)]
    _check_budgets(records, keys)
    cases = _Cases(records, patients)
    counts: dict[str, Counts] = {
        s: {k: {c: v for r in rs for c, v in cases.counts(r, k).items()} for k in keys} for s, rs in by_setting.items()
    }
    methods = {s: _entry(counts[s], budgets, cases.patients, by_setting[s]) for s in counts}
    out: dict = {"methods": methods, "paired": {}, "paired_per_fold": {}, "matched": []}
    compare, budget = settings.compare, settings.budget_key
    if compare is not None and budget in keys:
        out["paired"] = _paired(counts, methods, compare, budget, cases.patients)
        out["paired_per_fold"] = _paired_per_fold(by_setting, compare, budget, cases)
        out["matched"] = matched(counts, methods, cases.patients, compare, budget)
    return out


def _check_fields(records: Sequence[Record]) -> None:
    """Every record holds the fields pooling reads, else a ValueError."""
    for record in records:
        absent = [k for k in RECORD_FIELDS if k not in record]
        if absent:
            cell = " ".join(f"{k} {record[k]}" for k in ("setting", "fold", "seed") if k in record) or "a record"
            raise ValueError(f"{cell}: the record lacks {absent} (it has {sorted(record)}); restore the records file")


def _check_budgets(records: Sequence[Record], keys: list[str]) -> None:
    """Every record holds every budget some record holds (cells scored on one grid), else a ValueError."""
    for record in records:
        missing = [k for k in keys if k not in record["counts"]]
        if missing:
            raise ValueError(
                f"cell {record['setting']} fold {record['fold']} seed {record['seed']} has no counts at eps "
                f"{', '.join(missing)}, which other cells have: cells reported together need the same budgets (give "
                "every configuration one evaluate.eps; imaseg study run then scores the stale cells again)"
            )
