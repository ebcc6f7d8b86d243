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
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from imaseg.attacks import attack_spec, parse_attack_name
from imaseg.config import save_config
from imaseg.evaluation.cell_store import CellStore
from imaseg.evaluation.cells import CaseOutput, Cell, attack_case, case_record, sample_counts, worst_of
from imaseg.evaluation.checks import CheckContext, sanity_checks
from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.endpoints import cardiac_endpoints, structure_sizes, write_endpoints_csv
from imaseg.evaluation.loader import LoadedRun, load_run
from imaseg.evaluation.outputs import write_overlays, write_predictions, write_results_csv, write_worst_members_csv
from imaseg.evaluation.plan import attack_settings, case_settings, fingerprint, plan_cells, worst_members
from imaseg.evaluation.summary import build_summary
from imaseg.metrics.worst import choose_worst
from imaseg.networks import resolve_device
from imaseg.utils.atomic import atomic_write_json

__all__ = ["evaluate", "main_attack"]

logger = logging.getLogger(__name__)


def evaluate(run_dir, config: EvalConfig, *, cache=None, progress: bool = True) -> dict:
    """Evaluate a trained run under attack; returns the summary (also written to ``summary.json``).

    ``config`` is not modified: an unset ``clip_range`` takes the run's training setting in a copy.
    """
    if not re.fullmatch(r"[\w.+-]+", config.tag) or set(config.tag) == {"."}:
        raise ValueError(f"`tag` must be a plain folder name (letters, digits, . _ + -), got {config.tag!r}")
    device = resolve_device(config.device)
    loaded = load_run(run_dir, cache=cache, checkpoint=config.checkpoint, device=device)
    cases = _cases(loaded, config, cache)
    if cache is not None and not config.allow_training_cases:
        _refuse_training_cases(run_dir, cases, cache)
    if config.clip_range is None and loaded.clip_range:
        config = replace(config, clip_range=list(loaded.clip_range))
    out = Path(run_dir) / "eval" / config.tag
    cells_store = CellStore(out, fingerprint(config, loaded.checkpoint, cases))
    _save_settings(out, run_dir, config, loaded, cases, cells_store.fingerprint)
    cells = plan_cells(config)
    window = loaded.patch_size or loaded.store.manifest["config"].get("spatial_size")  # patch runs: their patch
    settings = case_settings(config, loaded.store.spatial_dims, window)
    started = time.perf_counter()
    load_case = functools.cache(loaded.store.load_case)  # each case read once, shared by cells and endpoints
    records = _run_cells(loaded, cells, cases, config, settings, cells_store, device, progress, load_case)
    context = CheckContext(
        loaded.network, loaded.store, cases, settings, device, steps=config.steps, steps_check=config.steps_check
    )
    checks = sanity_checks(records, cells, context)
    clip = config.clip_range
    write_results_csv(out / "results.csv", records, loaded.store.labels, float(clip[1] - clip[0]) if clip else None)
    patients = {cid: str(loaded.store.case_meta(cid).get("group", cid)) for cid in cases}
    write_worst_members_csv(out / "worst_members.csv", records)
    endpoints = _endpoints(out, loaded, cells, cases, cells_store, patients, load_case)
    summary = build_summary(
        records, cells, loaded.store.labels, config, checks, seconds=time.perf_counter() - started, patients=patients
    )
    summary.update(_run_facts(run_dir, loaded, cases, config))
    summary["endpoints"] = endpoints
    if config.overlays > 0:
        write_overlays(
            out / "overlays", loaded.network, loaded.store, cases[: config.overlays], cells, settings, device
        )
    if config.save_predictions:
        write_predictions(out / "predictions", loaded.store, cases, cells, cells_store.output)
    atomic_write_json(out / "summary.json", summary)
    for line in summary["headline"]:
        logger.info(line)
    for warning in checks.get("warnings", []):
        logger.warning(warning)
    return summary


def _cases(loaded: LoadedRun, config: EvalConfig, cache) -> list[str]:
    split = config.split if cache is None else "all"
    store = loaded.store
    cases = store.case_ids(split, loaded.fold) if split != "all" else store.case_ids("all")
    if not cases:
        raise ValueError(f"split {config.split!r} of fold {loaded.fold} holds no cases")
    return cases


def _refuse_training_cases(run_dir, cases: list[str], cache) -> None:
    """Evaluating another cache must not score the cases the model was trained on (leakage)."""
    split = Path(run_dir) / "split.json"
    trained = set(json.loads(split.read_text()).get("train", [])) if split.is_file() else set()
    leaked = sorted(trained.intersection(cases))
    if leaked:
        raise ValueError(
            f"{cache} holds {len(leaked)} case(s) this run trained on ({', '.join(leaked[:5])}"
            f"{', ...' if len(leaked) > 5 else ''}): their Dice is not a held-out number; evaluate the run's test "
            "split (omit --cache / --data), other data, or pass --allow-training-cases to do it anyway"
        )


def _save_settings(out: Path, run_dir, config: EvalConfig, loaded: LoadedRun, cases: list[str], key: str) -> None:
    save_config(
        out / "settings.yaml",
        {
            "evaluate": config,
            "run": str(Path(run_dir).resolve()),
            "checkpoint": str(loaded.checkpoint),
            "epoch": loaded.epoch,
            "cases": cases,
            "fingerprint": key,
        },
    )


def _run_cells(
    loaded: LoadedRun, cells, cases, config: EvalConfig, settings, store: CellStore, device, progress, load_case
):
    """Every cell's record: stored ones reused, the others computed case by case and stored."""

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells) * len(cases), desc="evaluating", unit="case")
    records: dict[str, dict] = {}
    for cell in cells:
        record = store.load(cell, hd95=config.hd95, perturbations=config.save_predictions)
        if record is None:
            outputs = {}
            choices = _worst_choices(cell, cells, cases, records)
            for case_id in cases:
                outputs[case_id] = _case_output(
                    loaded, cell, cells, load_case(case_id), case_id, config, settings, store, device, choices
                )
                if bar is not None:
                    bar.set_postfix_str(f"{cell.key} {case_id}")
                    bar.update(1)
            record = _cell_record(cell, outputs, load_case, loaded.store.num_classes, config, store.fingerprint)
            if choices is not None:
                names = [m.attack for m in worst_members(cell, cells)]
                for cid, case_choice in choices.items():
                    record["cases"][cid]["members"] = [names[i] for i in case_choice]
            store.save(cell, record, outputs)
        elif bar is not None:
            bar.update(len(cases))
        records[cell.key] = record
    if bar is not None:
        bar.close()
    return records


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


def _case_output(
    loaded, cell: Cell, cells, case, case_id: str, config, settings, store: CellStore, device, choices
) -> CaseOutput:
    if choices is not None:
        outputs = [store.output(member, case_id) for member in worst_members(cell, cells)]
        return worst_of(outputs, case, choices[case_id])
    return attack_case(loaded.network, case, cell, settings, device, keep_perturbation=config.save_predictions)


def _cell_record(cell: Cell, outputs: dict, load_case, num_classes: int, config: EvalConfig, key: str) -> dict:
    return {
        "attack": cell.attack,
        "norm": cell.norm,
        "eps": cell.eps,
        "fingerprint": key,
        "steps": config.steps,
        "restarts": config.restarts,
        "seed": config.seed,
        "has_hd95": config.hd95,
        "has_perturbations": config.save_predictions,
        "cases": {
            cid: case_record(o, load_case(cid), num_classes, cell, hd95=config.hd95, eps_unit=config.eps_unit)
            for cid, o in outputs.items()
        },
    }


def _endpoints(out: Path, loaded: LoadedRun, cells, cases, store: CellStore, patients: dict, load_case) -> dict:
    """Structure sizes per case (and cardiac endpoints per patient), truth against every cell; writes
    ``endpoints.csv`` and returns the mean absolute error per endpoint and cell."""
    k, names = loaded.store.num_classes, loaded.store.labels
    geometry, truth, unit = {}, {}, "cm2"
    for cid in cases:
        case = load_case(cid)
        geometry[cid] = case.affine
        truth[cid] = structure_sizes(case.label, case.affine, k)
        unit = "ml" if case.label.ndim == 3 else "cm2"
    truth_endpoints = cardiac_endpoints(truth, patients, names)
    rows: list[dict] = []
    summary: dict = {}
    for cell in cells:
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
    write_endpoints_csv(out / "endpoints.csv", rows)
    return {"mean_abs_error": summary, "cardiac": bool(truth_endpoints)}


def _run_facts(run_dir, loaded: LoadedRun, cases: list[str], config: EvalConfig) -> dict:
    """What the report needs to know about the run and the attacks without reading anything else."""
    store = loaded.store
    shared = attack_settings(config)
    return {
        "run": str(Path(run_dir).resolve()),
        "checkpoint": str(loaded.checkpoint),
        "epoch": loaded.epoch,
        "method": loaded.method,
        "cases": cases,
        "spatial_dims": store.spatial_dims,
        "modality": store.manifest.get("modality"),
        "dataset": (store.manifest.get("dataset") or {}).get("name"),
        "intensity": store.manifest["config"].get("intensity"),
        "spatial_size": store.manifest["config"].get("spatial_size"),
        "patients": len({str(store.case_meta(cid).get("group", cid)) for cid in cases}),
        "attack_descriptions": {name.lower(): attack_spec(name).describe(shared) for name in config.attacks},
        "noise_attacks": sorted(name.lower() for name in config.attacks if not attack_spec(name).gradient),
        "main_attack": main_attack(config.attacks),
        "citations": sorted({c for c in (attack_spec(n).citation for n in config.attacks) if c}),
    }


def main_attack(attacks) -> str | None:
    """The attack a report leads with: L2 before Linf, the worst case before single attacks, then the
    attack with the configured losses, gradient attacks before noise (ties keep the configured order)."""

    def rank(name: str) -> tuple[bool, bool, bool, bool]:
        spec, norm = parse_attack_name(name)
        return (norm != "l2", not spec.ensemble, not spec.uses_losses, not spec.gradient)

    ordered = sorted((name.lower() for name in attacks), key=rank)
    return ordered[0] if ordered else None
