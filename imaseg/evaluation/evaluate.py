"""``imaseg evaluate``: Dice and HD95 per case and class, clean and under attack at a grid of budgets.

Output folder ``RUN/eval/TAG/``::

    settings.yaml    the resolved evaluation settings, the run, checkpoint, cases
    cells/KEY.json   per-case metrics of one (attack, eps) cell; KEY.npz its predictions (reused on rerun)
    results.csv      long format: case, class, attack, norm, eps, eps_source, eps_rms, steps, restarts,
                     seed, dice, hd95, realised_norm
    worst_members.csv  per worst-case cell, case and slice: the member attack it took
    summary.json     per attack and eps: Dice per class under each aggregation (global / case / slice)
                     with the per-case spread, robust Dice, area under the Dice-vs-eps curve, HD95,
                     and the sanity checks
    overlays/*.npz   image, label, clean / attacked prediction, perturbation, flip radii for the report
    predictions/     with --save-predictions: NIfTI in the source image's geometry

Every file is written atomically; a killed evaluation resumes at the first unfinished cell.

With ``postprocess`` (e.g. ``lcc``) every prediction, clean and attacked, is post-processed before it is
scored, written or shown; the attacks still optimise the raw logits. ``summary.json`` records it
(``settings.postprocess``, and the headline says so).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from imaseg.attacks import attack_spec, parse_attack_name
from imaseg.evaluation.cells import CaseOutput, Cell, attack_case, case_record, sample_counts, worst_of
from imaseg.evaluation.checks import CheckContext, sanity_checks
from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.endpoints import cardiac_endpoints, structure_sizes, write_endpoints_csv
from imaseg.evaluation.masking import load_surrogate
from imaseg.evaluation.outputs import write_overlays, write_predictions, write_results_csv, write_worst_members_csv
from imaseg.evaluation.plan import attack_settings, worst_members
from imaseg.evaluation.session import EvaluationSession, open_session
from imaseg.evaluation.summary import build_summary, case_counts
from imaseg.metrics.worst import choose_worst, mean_global_dice
from imaseg.summary import Endpoints, RunFacts

__all__ = ["evaluate", "main_attack"]

logger = logging.getLogger(__name__)


def evaluate(run_dir, config: EvalConfig, *, cache=None, progress: bool = True) -> dict:
    """Evaluate a trained run under attack; returns the summary as written to ``summary.json`` (its JSON
    mapping: :meth:`imaseg.summary.Summary.from_json` gives the typed view).

    ``config`` is not modified: an unset ``clip_range`` takes the run's training setting in a copy.
    """
    session = open_session(run_dir, config, cache=cache)
    config, loaded, evaluation = session.config, session.loaded, session.evaluation
    started = time.perf_counter()
    records = _run_cells(session, progress)
    context = CheckContext(
        loaded.network,
        loaded.store,
        session.cases,
        session.settings,
        session.device,
        steps=config.steps,
        steps_check=config.steps_check,
        gradient_free_check=config.gradient_free_check,
        surrogate=load_surrogate(session) if config.transfer_check else None,
    )
    checks = sanity_checks(records, session.cells, context)
    clip = config.clip_range
    write_results_csv(evaluation.results_path, records, session.labels, float(clip[1] - clip[0]) if clip else None)
    write_worst_members_csv(evaluation.worst_members_path, records)
    patients = session.patients()
    summary = build_summary(
        records,
        session.cells,
        session.labels,
        config,
        checks,
        seconds=time.perf_counter() - started,
        patients=patients,
        facts=_run_facts(session),
        endpoints=_endpoints(session, patients),
    )
    _write_pictures(session)
    evaluation.write_summary(summary)
    for line in summary.headline:
        logger.info(line)
    for warning in summary.warnings:
        logger.warning(warning)
    return summary.to_json()


def _write_pictures(session: EvaluationSession) -> None:
    """Report overlays and, with ``save_predictions``, NIfTI predictions."""
    config, loaded, evaluation = session.config, session.loaded, session.evaluation
    if config.overlays > 0:
        write_overlays(
            evaluation.overlays_dir,
            loaded.network,
            loaded.store,
            session.cases[: config.overlays],
            session.cells,
            session.settings,
            session.device,
            session.store.output,
        )
    if config.save_predictions:
        write_predictions(evaluation.predictions_dir, loaded.store, session.cases, session.cells, session.store.output)


def _run_cells(session: EvaluationSession, progress: bool) -> dict[str, dict]:
    """Every cell's record: stored ones reused, the others computed case by case and stored."""
    config, store, cases, cells = session.config, session.store, session.cases, session.cells
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells) * len(cases), desc="evaluating", unit="case")
    records: dict[str, dict] = {}
    for cell in cells:
        record = store.load(cell, hd95=config.hd95, perturbations=config.save_predictions)
        if record is None:
            choices = _worst_choices(cell, cells, cases, records)
            outputs, record = _compute_cell(session, cell, choices, bar)
            if choices is not None and config.postprocess != "none":
                lowest = _lowest_member(cell, cells, records)
                if _global_dice(record) > _global_dice(records[worst_members(cell, cells)[lowest].key]) + 1e-12:
                    # post-processing the stitched slices undid the choice: take the lowest member whole
                    choices = {cid: np.full_like(choice, lowest) for cid, choice in choices.items()}
                    outputs, record = _compute_cell(session, cell, choices, None)
            store.save(cell, record, outputs)
        elif bar is not None:
            bar.update(len(cases))
        records[cell.key] = record
    if bar is not None:
        bar.close()
    return records


def _compute_cell(
    session: EvaluationSession, cell: Cell, choices: dict | None, bar
) -> tuple[dict[str, CaseOutput], dict]:
    """One cell's outputs and record, case by case (an ensemble cell: each case's samples as ``choices`` says)."""
    outputs = {}
    for case_id in session.cases:
        outputs[case_id] = _case_output(session, cell, case_id, choices)
        if bar is not None:
            bar.set_postfix_str(f"{cell.key} {case_id}")
            bar.update(1)
    record = _cell_record(session, cell, outputs)
    if choices is not None:
        names = [m.attack for m in worst_members(cell, session.cells)]
        for cid, case_choice in choices.items():
            record["cases"][cid]["members"] = [names[i] for i in case_choice]
    return outputs, record


def _global_dice(record: dict) -> float:
    """A cell's global Dice, mean over foreground classes (the headline), from its per-case counts."""
    return float(mean_global_dice(np.sum(list(case_counts(record).values()), axis=0)))


def _lowest_member(cell: Cell, cells: list[Cell], records: dict) -> int:
    """The member of an ensemble cell with the lowest global Dice (where :func:`choose_worst` starts)."""
    scores = [_global_dice(records[m.key]) for m in worst_members(cell, cells)]
    return int(np.argmin(np.nan_to_num(scores, nan=np.inf)))


def _worst_choices(cell: Cell, cells: list[Cell], cases: list[str], records: dict) -> dict | None:
    """For an ensemble cell: per case, which member each sample takes (lowest global Dice over all cases)."""
    spec = cell.spec
    if spec is None or not spec.ensemble:
        return None
    members = worst_members(cell, cells)
    per_member = [[s for cid in cases for s in sample_counts(records[m.key]["cases"][cid])] for m in members]
    choice = choose_worst(np.asarray(per_member, dtype=float))
    sizes = [len(sample_counts(records[members[0].key]["cases"][cid])) for cid in cases]
    bounds = np.cumsum([0, *sizes])
    return {cid: choice[bounds[i] : bounds[i + 1]] for i, cid in enumerate(cases)}


def _case_output(session: EvaluationSession, cell: Cell, case_id: str, choices: dict | None) -> CaseOutput:
    case = session.load_case(case_id)
    if choices is not None:
        outputs = [session.store.output(member, case_id) for member in worst_members(cell, session.cells)]
        return worst_of(outputs, case, choices[case_id], session.config.postprocess)
    keep = session.config.save_predictions
    return attack_case(session.loaded.network, case, cell, session.settings, session.device, keep_perturbation=keep)


def _cell_record(session: EvaluationSession, cell: Cell, outputs: dict[str, CaseOutput]) -> dict:
    config = session.config
    return {
        "attack": cell.attack,
        "norm": cell.norm,
        "eps": cell.eps,
        "fingerprint": session.store.fingerprint,
        "steps": config.steps,
        "restarts": config.restarts,
        "seed": config.seed,
        "has_hd95": config.hd95,
        "has_perturbations": config.save_predictions,
        "cases": {
            cid: case_record(
                o, session.load_case(cid), session.num_classes, cell, hd95=config.hd95, eps_unit=config.eps_unit
            )
            for cid, o in outputs.items()
        },
    }


def _endpoints(session: EvaluationSession, patients: dict[str, str]) -> Endpoints:
    """Structure sizes per case (and cardiac endpoints per patient), truth against every cell; writes
    ``endpoints.csv`` and returns the mean absolute error per endpoint and cell."""
    k, names, cases, store = session.num_classes, session.labels, session.cases, session.store
    geometry, truth, unit = {}, {}, "cm2"
    for cid in cases:
        case = session.load_case(cid)
        geometry[cid] = case.affine
        truth[cid] = structure_sizes(case.label, case.affine, k)
        unit = "ml" if case.label.ndim == 3 else "cm2"
    truth_endpoints = cardiac_endpoints(truth, patients, names)
    rows: list[dict] = []
    summary: dict = {}
    for cell in session.cells:
        predicted = {cid: structure_sizes(store.output(cell, cid).prediction, geometry[cid], k) for cid in cases}
        pairs = [
            (cid, f"{names.get(c, c)} {unit}", t, p)
            for cid in cases
            for c, (t, p) in enumerate(zip(truth[cid], predicted[cid]), start=1)
        ]
        for patient, values in cardiac_endpoints(predicted, patients, names, reference=truth).items():
            pairs += [
                (patient, e, truth_endpoints[patient][e], v) for e, v in values.items() if patient in truth_endpoints
            ]
        errors: dict[str, list[float]] = {}
        for subject, endpoint, t, p in pairs:
            rows.append(
                {
                    "subject": subject,
                    "endpoint": endpoint,
                    "attack": cell.attack,
                    "eps": cell.eps,
                    "truth": t,
                    "prediction": p,
                    "abs_error": abs(p - t),
                }
            )
            errors.setdefault(endpoint, []).append(abs(p - t))
        summary[cell.key] = {name: float(np.nanmean(v)) for name, v in errors.items()}
    write_endpoints_csv(session.evaluation.endpoints_path, rows)
    return Endpoints(mean_abs_error=summary, cardiac=bool(truth_endpoints))


def _run_facts(session: EvaluationSession) -> RunFacts:
    """What the report needs to know about the run and the attacks without reading anything else."""
    loaded, cases, config = session.loaded, session.cases, session.config
    store = loaded.store
    shared = attack_settings(config)
    return RunFacts(
        run=str(session.run.path.resolve()),
        checkpoint=str(loaded.checkpoint),
        epoch=loaded.epoch,
        method=loaded.method,
        cases=cases,
        spatial_dims=store.spatial_dims,
        modality=store.manifest.modality,
        dataset=store.manifest.dataset_name,
        intensity=store.manifest.config.get("intensity"),
        spatial_size=store.manifest.config.get("spatial_size"),
        patients=len({store.patient(cid) for cid in cases}),
        attack_descriptions={name.lower(): attack_spec(name).describe(shared) for name in config.attacks},
        noise_attacks=sorted(name.lower() for name in config.attacks if not attack_spec(name).gradient),
        main_attack=main_attack(config.attacks),
        citations=sorted({c for c in (attack_spec(n).citation for n in config.attacks) if c}),
    )


def main_attack(attacks) -> str | None:
    """The attack a report leads with: L2 before Linf, the worst case before single attacks, then the
    attack with the configured losses, gradient attacks before noise (ties keep the configured order)."""

    def rank(name: str) -> tuple[bool, bool, bool, bool]:
        spec, norm = parse_attack_name(name)
        return (norm != "l2", not spec.ensemble, not spec.uses_losses, not spec.gradient)

    ordered = sorted((name.lower() for name in attacks), key=rank)
    return ordered[0] if ordered else None
