"""The JSON summary of an evaluation: Dice per class under each aggregation, per attack and budget."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping

import numpy as np

from imaseg.config import to_dict
from imaseg.evaluation.metrics import AGGREGATIONS, aggregate_dice
from imaseg.metrics.bootstrap import bootstrap_dice

__all__ = ["AGGREGATION_HELP", "build_summary"]

AGGREGATION_HELP = {
    "global": "global voxel Dice: tp/fp/fn summed over all voxels of all cases, one Dice per class",
    "case": "per-case mean: each whole case's Dice, averaged over cases (cases without the class skipped)",
    "slice": "per-slice mean: each 2D slice's Dice, averaged over slices holding the class in truth or prediction",
}


def _nanmean(values) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(np.asarray(values, dtype=float)))


def case_counts(record: dict) -> dict[str, np.ndarray]:
    """Per case, ``(C, 3)`` ``[tp, fp, fn]`` per foreground class, from a cell record."""
    return {cid: np.array([c["tp"], c["fp"], c["fn"]], dtype=float).T for cid, c in record["cases"].items()}


def _cell_summary(record: dict, patients: Mapping[str, str] | None = None) -> dict:
    dice = aggregate_dice(record["cases"])
    hd = np.array([c["hd95"] for c in record["cases"].values()], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hd95 = np.nanmean(hd, axis=0).tolist() if hd.size else []
    won = Counter(m for c in record["cases"].values() for m in c.get("members", []))
    return {
        **({"members_won": dict(won)} if won else {}),
        "dice": dice,
        "mean_dice": {agg: _nanmean(dice[agg]) for agg in AGGREGATIONS},
        **({"ci_global": list(bootstrap_dice(case_counts(record), patients, replicates=1000))} if patients else {}),
        "hd95": hd95,
        "hd95_undefined": np.isnan(hd).sum(axis=0).astype(int).tolist() if hd.size else [],
        "realised_norm": _nanmean([c["norm_mean"] for c in record["cases"].values()]),
        "eps_source": _nanmean([c["eps_source"] for c in record["cases"].values()]),
        "eps_rms": _nanmean([c["eps_rms"] for c in record["cases"].values()]),
    }


def build_summary(
    records: dict,
    cells,
    labels: dict[int, str],
    config,
    checks: dict,
    *,
    seconds: float,
    patients: Mapping[str, str] | None = None,
) -> dict:
    """Assemble ``summary.json`` from the cell records; with ``patients`` (case -> patient) every global Dice
    also gets its 95% bootstrap interval over patients (``ci_global``)."""
    clean = _cell_summary(records["clean"], patients)
    attacks: dict[str, dict] = {}
    for cell in cells:
        if cell.attack == "clean":
            continue
        entry = attacks.setdefault(cell.attack, {"norm": cell.norm, "eps": [], "cells": []})
        entry["eps"].append(cell.eps)
        entry["cells"].append(_cell_summary(records[cell.key], patients))
    robust = {}
    for name, entry in attacks.items():
        curve = [c["mean_dice"]["global"] for c in entry["cells"]]
        eps = entry["eps"]
        span = (max(eps) - min(eps)) if len(eps) > 1 else 0.0
        entry["auc"] = float(np.trapezoid(curve, eps) / span) if span > 0 else float("nan")
        robust[name] = {f"{e:g}": d for e, d in zip(eps, curve)}
    interval = f", 95% CI {clean['ci_global'][0]:.3f}-{clean['ci_global'][1]:.3f} over patients" if patients else ""
    headline = [
        f"clean Dice {clean['mean_dice']['global']:.3f} (global voxel Dice, mean over foreground classes{interval}; "
        f"per-case mean {clean['mean_dice']['case']:.3f})"
    ]
    for name, by_eps in robust.items():
        points = ", ".join(f"{e}: {d:.3f}" for e, d in by_eps.items())
        headline.append(f"{name} (steps {config.steps}, restarts {config.restarts}, seed {config.seed}): {points}")
    return {
        "classes": {str(k): v for k, v in labels.items() if k > 0},
        "aggregations": AGGREGATION_HELP,
        "headline_metric": "global voxel Dice, mean over foreground classes",
        "clean": clean,
        "attacks": attacks,
        "robust_dice": robust,
        "checks": checks,
        "headline": headline,
        "settings": to_dict(config),
        "seconds": seconds,
    }
