"""Building the evaluation's :class:`~imaseg.summary.Summary` from the cell records: Dice per class under
each aggregation, per attack and budget (the keys of ``summary.json`` live in :mod:`imaseg.summary`)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping

import numpy as np

from imaseg.config import to_dict
from imaseg.evaluation.cells import CLEAN
from imaseg.evaluation.metrics import AGGREGATIONS, aggregate_dice
from imaseg.metrics.bootstrap import bootstrap_dice
from imaseg.summary import (
    AGGREGATION_HELP,
    HEADLINE_METRIC,
    AttackCurve,
    CellSummary,
    Checks,
    Endpoints,
    RunFacts,
    Settings,
    Summary,
)

__all__ = ["AGGREGATION_HELP", "build_summary"]


def _nanmean(values) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(np.asarray(values, dtype=float)))


def case_counts(record: dict) -> dict[str, np.ndarray]:
    """Per case, ``(C, 3)`` ``[tp, fp, fn]`` per foreground class, from a cell record."""
    return {cid: np.array([c["tp"], c["fp"], c["fn"]], dtype=float).T for cid, c in record["cases"].items()}


def _cell_summary(record: dict, patients: Mapping[str, str] | None = None) -> CellSummary:
    dice = aggregate_dice(record["cases"])
    hd = np.array([c["hd95"] for c in record["cases"].values()], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hd95 = np.nanmean(hd, axis=0).tolist() if hd.size else []
    won = Counter(m for c in record["cases"].values() for m in c.get("members", []))
    return CellSummary(
        members_won=dict(won),
        dice=dice,
        mean_dice={agg: _nanmean(dice[agg]) for agg in AGGREGATIONS},
        ci_global=list(bootstrap_dice(case_counts(record), patients, replicates=1000)) if patients else None,
        hd95=hd95,
        hd95_undefined=np.isnan(hd).sum(axis=0).astype(int).tolist() if hd.size else [],
        realised_norm=_nanmean([c["norm_mean"] for c in record["cases"].values()]),
        eps_source=_nanmean([c["eps_source"] for c in record["cases"].values()]),
        eps_rms=_nanmean([c["eps_rms"] for c in record["cases"].values()]),
    )


def _curves(records: dict, cells, patients: Mapping[str, str] | None) -> dict[str, AttackCurve]:
    grid: dict[str, tuple[str, list[float], list[CellSummary]]] = {}
    for cell in cells:
        if cell.is_clean:
            continue
        _, eps, summaries = grid.setdefault(cell.attack, (cell.norm, [], []))
        eps.append(cell.eps)
        summaries.append(_cell_summary(records[cell.key], patients))
    curves = {}
    for name, (norm, eps, summaries) in grid.items():
        curve = [c.global_dice for c in summaries]
        span = (max(eps) - min(eps)) if len(eps) > 1 else 0.0
        auc = float(np.trapezoid(curve, eps) / span) if span > 0 else float("nan")
        curves[name] = AttackCurve(norm=norm, eps=eps, cells=summaries, auc=auc)
    return curves


def build_summary(
    records: dict,
    cells,
    labels: dict[int, str],
    config,
    checks: Checks | Mapping,
    *,
    seconds: float,
    patients: Mapping[str, str] | None = None,
    facts: RunFacts | None = None,
    endpoints: Endpoints | None = None,
) -> Summary:
    """The summary of the cell records; with ``patients`` (case -> patient) every global Dice also gets its
    95% bootstrap interval over patients (``CellSummary.ci_global``)."""
    clean = _cell_summary(records[CLEAN], patients)
    attacks = _curves(records, cells, patients)
    robust = Summary.robust_table(attacks)
    interval = ""
    if clean.interval is not None:
        interval = f", 95% CI {clean.interval[0]:.3f}-{clean.interval[1]:.3f} over patients"
    post = getattr(config, "postprocess", "none")
    applied = f"; predictions post-processed: {post}" if post != "none" else ""
    headline = [
        f"clean Dice {clean.global_dice:.3f} ({HEADLINE_METRIC}{interval}; per-case mean {clean.mean('case'):.3f}"
        f"{applied})"
    ]
    for name, by_eps in robust.items():
        points = ", ".join(f"{e}: {d:.3f}" for e, d in by_eps.items())
        headline.append(f"{name} (steps {config.steps}, restarts {config.restarts}, seed {config.seed}): {points}")
    return Summary(
        classes={str(k): v for k, v in labels.items() if k > 0},
        aggregations=dict(AGGREGATION_HELP),
        headline_metric=HEADLINE_METRIC,
        clean=clean,
        attacks=attacks,
        robust_dice=robust,
        checks=checks if isinstance(checks, Checks) else Checks.from_json(checks),
        headline=headline,
        settings=Settings.from_json(to_dict(config)),
        seconds=seconds,
        facts=facts or RunFacts(),
        endpoints=endpoints,
    )
