"""Running a study: its cells, resumably, through the normal preprocess -> train -> evaluate path.

Every cell is an ``imaseg train`` + ``imaseg evaluate`` run folder under the study's ``work`` folder, run
with :func:`imaseg.training.trainer.train` and :func:`imaseg.evaluation.evaluate.evaluate`. Finished work
is skipped at two levels: a cell whose records entry has the same fingerprint is not touched at all (the
records file is committed, so this holds on a fresh checkout), and inside a cell the
:class:`~imaseg.pipeline.StageRunner` of the work folder skips a training or evaluation that finished with
the same settings (a changed evaluation setting re-evaluates without retraining; an interrupted training
resumes). ``max_minutes`` stops between cells. Each finished cell is appended to the records file at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imaseg.cache.reader import CaseStore
from imaseg.cache.writer import preprocess_dataset
from imaseg.config import config_from_dict
from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.evaluate import evaluate
from imaseg.evaluation.summary import case_counts
from imaseg.pipeline import StageRunner
from imaseg.run import EvalDir, RunDir
from imaseg.study.cells import (
    StudyCell,
    cache_folder,
    cell_fingerprints,
    eval_settings,
    expand_cells,
    slug,
    train_settings,
)
from imaseg.study.declaration import Study
from imaseg.study.records import StudyRecords
from imaseg.summary import Summary, cell_key
from imaseg.training.config import TrainConfig
from imaseg.training.trainer import train
from imaseg.transforms.chain import PreprocessConfig
from imaseg.utils.atomic import atomic_write_json

__all__ = ["CellPlan", "StudyOutcome", "has_trained_model", "plan_cells", "rebuild_cell", "run_study"]

logger = logging.getLogger("imaseg.study")


@dataclass(frozen=True)
class CellPlan:
    """One cell resolved: its run folder, checked configs, the settings its stages are keyed by."""

    cell: StudyCell
    run: Path
    train: TrainConfig
    train_settings: dict[str, Any]
    evaluate: EvalConfig
    eval_settings: dict[str, Any]
    fingerprint: str


@dataclass
class StudyOutcome:
    """What :func:`run_study` did: cells run, cells skipped as done, done cells whose model was trained again
    (:func:`rebuild_cell`), and the cell it stopped before."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    stopped_before: str | None = None


def plan_cells(study: Study, cells: Sequence[StudyCell], work: Path) -> list[CellPlan]:
    """Resolve and check every cell's settings before any work (a bad key stops the study at once)."""
    fingerprints = cell_fingerprints(study, cells)
    plans = []
    for cell in cells:
        settings = train_settings(study, cell)
        source = cell.init_folder(work)
        if source is not None:
            settings["init"] = str(RunDir(source).last_checkpoint)
        evaluation = eval_settings(study, cell)
        config = config_from_dict(EvalConfig, evaluation, source=f"{cell.key}: evaluate")
        if study.robust_attack.lower() not in [a.lower() for a in config.attacks]:
            raise ValueError(f"`robust_attack` {study.robust_attack!r} is not among the attacks {config.attacks}")
        train_config = config_from_dict(TrainConfig, settings, source=f"{cell.key}: train")
        run = cell.folder(work)
        plans.append(CellPlan(cell, run, train_config, settings, config, evaluation, fingerprints[cell.key]))
    return plans


def _digest(summary: Summary, attack: str) -> dict[str, Any]:
    """The cell's numbers: clean and robust global Dice with their intervals, the AUC, the per-case mean clean
    Dice and every attack's global Dice per budget."""
    curve = summary.curve(attack)
    clean = summary.clean.interval
    return {
        "clean": summary.clean_global,
        "clean_ci": list(clean) if clean else None,
        "robust": {f"{e:g}": c.global_dice for e, c in zip(curve.eps, curve.cells)},
        "robust_ci": {f"{e:g}": list(c.interval) if c.interval else None for e, c in zip(curve.eps, curve.cells)},
        "auc": curve.auc,
        "clean_case": summary.clean.mean("case"),  # per-case (per-volume) mean Dice
        "attacks": Summary.robust_table(summary.attacks),  # every attack's global Dice per budget
    }


def _training(run: Path) -> dict[str, Any]:
    """Epochs the run's log holds and their wall time (the first epoch, with its start-up, left out)."""
    seconds = [float(row["seconds"]) for row in RunDir(run).read_log() if row.get("seconds")]
    later = seconds[1:] or seconds
    return {
        "epochs_run": len(seconds),
        "seconds_per_epoch": sum(later) / len(later) if later else None,
        "minutes": sum(seconds) / 60,
    }


def _counts(evaluation: EvalDir, attack: str, eps: Iterable[float]) -> dict[str, dict[str, list]]:
    """Per case ``[tp, fp, fn]`` per class of the clean cell and of ``attack`` at each budget."""
    keys = {"clean": cell_key(None), **{f"{e:g}": cell_key(attack, e) for e in eps}}
    return {k: {c: v.tolist() for c, v in case_counts(evaluation.read_cell(key)).items()} for k, key in keys.items()}


def _evaluate(plan: CellPlan, evaluation: EvalDir, attack: str) -> dict[str, Any]:
    """Evaluate the cell's run (finished attack cells are reused) and digest its summary."""
    evaluate(plan.run, plan.evaluate, progress=False)
    # the typed summary, read back through the run folder (never evaluate's return value or file layout)
    return _digest(evaluation.read_summary(), attack)


def _run_cell(study: Study, plan: CellPlan, cache: Path, stages: StageRunner) -> dict[str, Any]:
    """Train and evaluate one cell (each stage skipped when done with the same settings); returns its record."""
    cell, key = plan.cell, plan.cell.key
    started = time.process_time()
    _train_cell(plan, cache, stages)
    _keep_margins(study, plan)
    attack = study.robust_attack.lower()
    evaluation = RunDir(plan.run).evaluation(plan.evaluate.tag)
    digest = stages.run(
        f"evaluate {key}",
        {"evaluate": plan.eval_settings, "robust_attack": attack},
        lambda _resume: _evaluate(plan, evaluation, attack),
        after=[f"train {key}"],
    )
    return {
        "method": cell.configuration.method,
        "setting": cell.name,
        "fold": cell.fold,
        "seed": cell.seed,
        "epochs": plan.train.epochs,
        "cpu_minutes": (time.process_time() - started) / 60,
        **digest,
        "training": _training(plan.run),
        "run": str(plan.run),
        # per case [tp, fp, fn] per class, so pooling needs no run folder (the records file is committed)
        "counts": _counts(evaluation, attack, plan.evaluate.eps),
    }


def _train_cell(plan: CellPlan, cache: Path, stages: StageRunner) -> None:
    """Train the cell's model (skipped when done with the same settings, resumed when interrupted)."""
    init = plan.cell.init_key
    stages.run(
        f"train {plan.cell.key}",
        {"train": plan.train_settings},  # the study's explicit settings: options added to imaseg later keep cells done
        lambda resume: train(cache, plan.run, plan.train, resume=resume, overwrite=not resume, progress=False)["epoch"],
        after=["preprocess", *([f"train {init}"] if init else [])],
    )


def rebuild_cell(plan: CellPlan, record: dict[str, Any], cache: Path, stages: StageRunner) -> bool:
    """Train a done cell's model again where its run folder is gone (a fresh checkout keeps only the records),
    and check it against the record: the clean ``[tp, fp, fn]`` of every case must be those recorded.

    The record is kept either way (a rebuilt model only serves the cells that start from it and the code that
    attacks the models); a model that differs is logged as a warning. Returns whether it reproduced the record.
    """
    _train_cell(plan, cache, stages)
    check = replace(
        plan.evaluate,
        attacks=[],
        eps=[0.0],
        eps_linf=[0.0],
        tag="rebuild-check",
        hd95=False,
        overlays=0,
        steps_check=False,
        gradient_free_check=False,
        transfer_check=False,
    )  # the clean predictions only
    evaluate(plan.run, check, progress=False)
    clean = RunDir(plan.run).evaluation(check.tag).read_cell(cell_key(None))
    counts = {c: v.tolist() for c, v in case_counts(clean).items()}
    same = counts == record["counts"]["clean"]
    if same:
        logger.info("%s: model trained again; its clean counts equal the record's on every case", plan.cell.key)
    else:
        differ = sum(counts.get(c) != v for c, v in record["counts"]["clean"].items())
        logger.warning(
            "%s: model trained again, but its clean counts differ from the record's on %d of %d cases "
            "(training not bitwise reproducible here, or changed data, code or library versions); the record is kept",
            plan.cell.key, differ, len(record["counts"]["clean"]),
        )  # fmt: skip
    return same


def has_trained_model(work: Path, cell: StudyCell, stages: dict | None = None) -> bool:
    """Whether ``work`` holds the cell's finished model: its checkpoint, and its training stage recorded as done
    (a training cut off mid-way leaves the ``last.pt`` of an earlier epoch: not a finished model). ``stages``:
    the work folder's stage record, when the caller has read it already."""
    if not RunDir(cell.folder(work)).last_checkpoint.is_file():
        return False
    state = stages if stages is not None else StageRunner(work).state
    return bool(state.get(f"train {cell.key}", {}).get("done"))


def _to_rebuild(
    plans: Sequence[CellPlan], todo: Sequence[CellPlan], rebuild_missing: bool, work: Path, state: dict
) -> list[CellPlan]:
    """Done cells without a finished model here that a cell to run starts from (or all, ``rebuild_missing``).
    ``state``: the work folder's stage record."""
    keys = {p.cell.key for p in todo}
    needed = {p.cell.init_key for p in todo if p.cell.init_key}
    chosen: list[CellPlan] = []
    for plan in reversed(plans):  # every cell comes after the one it starts from: walk back up the chains
        missing = not has_trained_model(work, plan.cell, state)
        if plan.cell.key not in keys and missing and (rebuild_missing or plan.cell.key in needed):
            chosen.insert(0, plan)
            needed.add(plan.cell.init_key or "")
    return chosen


def _keep_margins(study: Study, plan: CellPlan) -> None:
    """Copy the cell's ``margins.json`` (IMA) beside the records, named by the cell."""
    margins = RunDir(plan.run).read_margins()
    if margins is not None:
        atomic_write_json(study.margins_dir / f"{slug(plan.cell.key)}.json", margins, indent=None)


def _preprocess(study: Study, stages: StageRunner, cache: Path) -> None:
    if not study.data.is_dir():
        raise FileNotFoundError(f"{study.data}: the study's data folder does not exist (`data` in {study.source})")
    config = config_from_dict(PreprocessConfig, study.preprocess, source="preprocess")
    stages.run(
        "preprocess",
        {"pre": dict(study.preprocess)},
        lambda _resume: preprocess_dataset(study.data, cache, config, progress=False).num_samples,
    )


def run_study(
    study: Study,
    *,
    only: Iterable[str] | None = None,
    folds: Iterable[int] | None = None,
    seeds: Iterable[int] | None = None,
    max_minutes: float | None = None,
    work: str | Path | None = None,
    rerun_missing: bool = False,
    rebuild_missing: bool = False,
) -> StudyOutcome:
    """Run the study's cells that are not done, appending each finished one to the records file.

    Args:
        only, folds, seeds: a subset of the cells (see :func:`imaseg.study.cells.expand_cells`).
        max_minutes: stop before starting a cell once this many wall minutes have passed (default: the
            study's ``max_minutes``; none: no limit). Rerun to continue.
        work: the folder of the run folders and the cache (default: the study's ``work``).
        rerun_missing: also rerun cells the records hold that have no finished model here (for code
            that needs the models themselves, not only the committed records), replacing their records.
        rebuild_missing: train such cells' models again without touching their records
            (:func:`rebuild_cell`). Done cells that a cell to run starts from are always rebuilt where their
            model is missing.

    Raises:
        ValueError: a bad setting in any cell (before any work), or a case whose patient changed.
        FileNotFoundError: the study's data folder is absent.
    """
    work = Path(work) if work is not None else study.work
    limit = max_minutes if max_minutes is not None else study.max_minutes
    plans = plan_cells(study, expand_cells(study, only=only, folds=folds, seeds=seeds), work)
    records = StudyRecords.load(study.records_path)
    outcome = StudyOutcome()
    state = StageRunner(work).state if work.is_dir() else {}  # the stage record, read once for every cell
    todo = [
        p
        for p in plans
        if not records.is_done(p.cell.key, p.fingerprint)
        or (rerun_missing and not has_trained_model(work, p.cell, state))
    ]
    rebuild = _to_rebuild(plans, todo, rebuild_missing, work, state)
    outcome.skipped = [p.cell.key for p in plans if p not in todo and p not in rebuild]
    if not todo and not rebuild:
        return outcome
    stages, cache = StageRunner(work), cache_folder(work)
    _preprocess(study, stages, cache)
    started = time.perf_counter()
    for plan in [p for p in plans if p in todo or p in rebuild]:
        if limit is not None and (time.perf_counter() - started) / 60 > limit:
            outcome.stopped_before = plan.cell.key
            logger.warning("stopping before %s: %g minutes reached; rerun to continue", plan.cell.key, limit)
            break
        if plan in rebuild:
            rebuild_cell(plan, records.cells[plan.cell.key], cache, stages)
            outcome.rebuilt.append(plan.cell.key)
            continue
        record = _run_cell(study, plan, cache, stages)
        store = CaseStore(cache)
        patients = {c: store.patient(c) for c in record["counts"]["clean"]}
        records.add(plan.cell.key, record, plan.fingerprint, patients)
        records.save(study.records_path)
        outcome.ran.append(plan.cell.key)
        logger.info("%s: clean %.3f, robust %s", plan.cell.key, record["clean"], _short(record["robust"]))
    return outcome


def _short(robust: dict[str, float]) -> str:
    return ", ".join(f"eps {e}: {d:.3f}" for e, d in robust.items())
