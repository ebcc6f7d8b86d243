"""Dice under attack on whole cases: cells of (attack, budget), metrics, summary, NIfTI outputs."""

from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.evaluate import evaluate
from imaseg.evaluation.geometry import to_source_grid
from imaseg.evaluation.loader import LoadedRun, load_run
from imaseg.evaluation.metrics import AGGREGATIONS, aggregate_dice, case_metrics
from imaseg.evaluation.plan import plan_cells

__all__ = [
    "AGGREGATIONS",
    "EvalConfig",
    "LoadedRun",
    "aggregate_dice",
    "case_metrics",
    "evaluate",
    "load_run",
    "plan_cells",
    "to_source_grid",
]
