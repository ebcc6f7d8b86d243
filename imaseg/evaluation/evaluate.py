"""``imaseg evaluate``: Dice and HD95 per case and class, clean and under attack at a grid of budgets.

Output folder ``RUN/eval/TAG/``::

    settings.yaml    the resolved evaluation settings, the run, checkpoint, cases
    cells/KEY.json   per-case metrics of one (attack, eps) cell; KEY.npz its predictions (reused on rerun)
    results.csv      long format: case, class, attack, norm, eps, eps_source, eps_rms, steps, restarts,
                     seed, dice, hd95, realised_norm
    summary.json     per attack and eps: Dice per class under each aggregation (global / case / slice)
                     with the per-case spread, robust Dice, area under the Dice-vs-eps curve, HD95,
                     and the sanity checks
    overlays/*.npz   image, label, clean / attacked prediction, perturbation, flip radii for the report
    predictions/     with --save-predictions: NIfTI in the source image's geometry

Every file is written atomically; a killed evaluation resumes at the first unfinished cell.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from imaseg.attacks.factory import parse_attack_name
from imaseg.config import save_config, to_dict
from imaseg.evaluation.cells import CaseOutput, Cell, attack_case, case_record, worst_of
from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.loader import load_run
from imaseg.evaluation.outputs import write_overlays, write_predictions, write_results_csv
from imaseg.evaluation.summary import build_summary
from imaseg.training.trainer import resolve_device
from imaseg.utils.atomic import atomic_path, atomic_write_json

__all__ = ["evaluate", "plan_cells"]

logger = logging.getLogger(__name__)


def plan_cells(config: EvalConfig) -> list[Cell]:
    """The clean cell, every attack at every budget of its norm, then the worst-case cells."""
    cells = [Cell("clean", 0.0)]
    worst = []
    for name in config.attacks:
        kind, norm = name.lower().rsplit("-", 1) if "-" in name else (name, "")
        grid = config.eps if norm == "l2" else config.eps_linf
        if kind == "worst":
            if norm not in ("l2", "linf"):
                raise ValueError(f"unknown attack {name!r}: use worst-l2 or worst-linf")
            worst += [Cell(name.lower(), float(e)) for e in grid]
            continue
        parse_attack_name(name)
        cells += [Cell(name.lower(), float(e)) for e in grid]
    return cells + worst


def _fingerprint(config: EvalConfig, loaded, cases: list[str]) -> str:
    relevant = {
        k: v
        for k, v in to_dict(config).items()
        if k in ("steps", "restarts", "losses", "seed", "clip_range", "roi_size", "amp")
    }
    stat = os.stat(loaded.checkpoint)
    blob = json.dumps([relevant, str(loaded.checkpoint), stat.st_size, stat.st_mtime_ns, cases], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate(run_dir, config: EvalConfig, *, cache=None, progress: bool = True) -> dict:
    """Evaluate a trained run under attack; returns the summary (also written to ``summary.json``)."""
    device = resolve_device(config.device)
    loaded = load_run(run_dir, cache=cache, checkpoint=config.checkpoint, device=device)
    store = loaded.store
    split = config.split if cache is None else "all"
    cases = store.case_ids(split, loaded.train_config.fold) if split != "all" else store.case_ids("all")
    if not cases:
        raise ValueError(f"split {config.split!r} of fold {loaded.train_config.fold} holds no cases")
    if config.clip_range is None and loaded.train_config.clip_range:
        config.clip_range = list(loaded.train_config.clip_range)
    settings = _Settings(config, store)
    out = Path(run_dir) / "eval" / config.tag
    (out / "cells").mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(config, loaded, cases)
    save_config(
        out / "settings.yaml",
        {
            "evaluate": config,
            "run": str(Path(run_dir).resolve()),
            "checkpoint": str(loaded.checkpoint),
            "epoch": loaded.epoch,
            "cases": cases,
            "fingerprint": fingerprint,
        },
    )
    cells = plan_cells(config)
    num_classes = store.num_classes
    case_memory: dict = {}

    def load_case(case_id: str):
        if case_id not in case_memory:
            case_memory[case_id] = store.load_case(case_id)
        return case_memory[case_id]

    started = time.perf_counter()
    records: dict[str, dict] = {}
    outputs_cache: dict[str, dict[str, CaseOutput]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells) * len(cases), desc="evaluating", unit="case")
    for cell in cells:
        record = _load_cell(out, cell, fingerprint, config)
        if record is None:
            outputs = {}
            for case_id in cases:
                case = load_case(case_id)
                if cell.attack.startswith("worst-"):
                    members = [
                        c
                        for c in cells
                        if c.norm == cell.norm and c.eps == cell.eps and not c.attack.startswith("worst-")
                    ]
                    if not members:
                        raise ValueError(f"{cell.attack} needs at least one {cell.norm} attack in `attacks`")
                    outputs[case_id] = worst_of([_cell_output(out, m, case_id, outputs_cache) for m in members], case)
                else:
                    outputs[case_id] = attack_case(
                        loaded.network, case, cell, settings, device, keep_perturbation=config.save_predictions
                    )
                if bar is not None:
                    bar.set_postfix_str(f"{cell.key} {case_id}")
                    bar.update(1)
            record = {
                "attack": cell.attack,
                "norm": cell.norm,
                "eps": cell.eps,
                "fingerprint": fingerprint,
                "steps": config.steps,
                "restarts": config.restarts,
                "seed": config.seed,
                "has_hd95": config.hd95,
                "has_perturbations": config.save_predictions,
                "cases": {
                    cid: case_record(o, load_case(cid), num_classes, cell, hd95=config.hd95)
                    for cid, o in outputs.items()
                },
            }
            _save_cell(out, cell, record, outputs)
            outputs_cache[cell.key] = outputs
        elif bar is not None:
            bar.update(len(cases))
        records[cell.key] = record
    if bar is not None:
        bar.close()
    checks = _sanity_checks(records, cells, config, loaded, store, cases, settings, device)
    write_results_csv(out / "results.csv", records, store.labels)
    summary = build_summary(records, cells, store.labels, config, checks, seconds=time.perf_counter() - started)
    summary.update(
        {
            "run": str(Path(run_dir).resolve()),
            "checkpoint": str(loaded.checkpoint),
            "epoch": loaded.epoch,
            "method": loaded.train_config.method,
            "cases": cases,
            "spatial_dims": store.spatial_dims,
            "modality": store.manifest.get("modality"),
            "intensity": store.manifest["config"].get("intensity"),
        }
    )
    if config.overlays > 0:
        write_overlays(out / "overlays", loaded.network, store, cases[: config.overlays], cells, settings, device)
    if config.save_predictions:
        write_predictions(
            out / "predictions", store, cases, cells, lambda cell, cid: _cell_output(out, cell, cid, outputs_cache)
        )
    atomic_write_json(out / "summary.json", summary)
    for line in summary["headline"]:
        logger.info(line)
    for warning in checks.get("warnings", []):
        logger.warning(warning)
    return summary


class _Settings:
    """What :func:`attack_case` needs, resolved (clip range as a tuple, roi size from the cache)."""

    def __init__(self, config: EvalConfig, store) -> None:
        self.steps, self.restarts, self.losses, self.seed = config.steps, config.restarts, config.losses, config.seed
        self.batch_size, self.amp = config.batch_size, config.amp
        self.clip_range = tuple(config.clip_range) if config.clip_range else None
        size = config.roi_size or store.manifest["config"].get("spatial_size")
        self.roi_size = tuple(size) if (size and store.spatial_dims == 3) else None


def _load_cell(out: Path, cell: Cell, fingerprint: str, config: EvalConfig) -> dict | None:
    path = out / "cells" / f"{cell.key}.json"
    if not path.is_file() or not (out / "cells" / f"{cell.key}.npz").is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("fingerprint") != fingerprint:
        return None
    if (config.hd95 and not record.get("has_hd95")) or (
        config.save_predictions and not record.get("has_perturbations")
    ):
        return None  # stored without what this evaluation asks for (HD95, perturbations): compute it again
    record["cases"] = _none_to_nan(record["cases"])  # the JSON file holds NaN (no Dice / HD95) as null
    return record


def _none_to_nan(value):
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: _none_to_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_none_to_nan(v) for v in value]
    return value


def _save_cell(out: Path, cell: Cell, record: dict, outputs: dict[str, CaseOutput]) -> None:
    arrays = {f"pred__{cid}": o.prediction for cid, o in outputs.items()}
    arrays.update({f"dice__{cid}": np.asarray(o.sample_dice, dtype=np.float32) for cid, o in outputs.items()})
    arrays.update({f"norm__{cid}": np.asarray(o.norms, dtype=np.float32) for cid, o in outputs.items()})
    arrays.update(
        {f"delta__{cid}": o.perturbation.astype(np.float16) for cid, o in outputs.items() if o.perturbation is not None}
    )
    with atomic_path(out / "cells" / f"{cell.key}.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    atomic_write_json(out / "cells" / f"{cell.key}.json", record)  # written last: marks the cell done


def _cell_output(out: Path, cell: Cell, case_id: str, memory: dict) -> CaseOutput:
    if cell.key in memory and case_id in memory[cell.key]:
        return memory[cell.key][case_id]
    with np.load(out / "cells" / f"{cell.key}.npz") as data:
        delta = data[f"delta__{case_id}"].astype(np.float32) if f"delta__{case_id}" in data else None
        return CaseOutput(
            data[f"pred__{case_id}"], delta, data[f"norm__{case_id}"].tolist(), data[f"dice__{case_id}"].tolist()
        )


def _sanity_checks(records, cells, config, loaded, store, cases, settings, device) -> dict:
    """eps = 0 equals clean exactly; noise weaker than PGD; 2x steps not better for the model."""
    from imaseg.evaluation.metrics import aggregate_dice

    checks: dict = {"warnings": []}
    clean = records["clean"]["cases"]
    zero_diffs = [
        abs(a - b)
        for cell in cells
        if cell.eps == 0 and cell.attack != "clean"
        for cid in cases
        for a, b in zip(records[cell.key]["cases"][cid]["dice"], clean[cid]["dice"])
        if a == a and b == b
    ]
    checks["eps0_equals_clean"] = {
        "max_abs_diff": max(zero_diffs, default=0.0),
        "ok": max(zero_diffs, default=0.0) == 0.0,
    }
    if not checks["eps0_equals_clean"]["ok"]:
        checks["warnings"].append(
            f"eps = 0 differs from clean Dice by up to {checks['eps0_equals_clean']['max_abs_diff']:.4g}"
        )
    mean = {key: float(np.nanmean(aggregate_dice(r["cases"])["global"])) for key, r in records.items()}
    noise_vs_pgd = []
    for cell in cells:
        if cell.attack.startswith(("noise-", "uniform-")) and cell.eps > 0:
            for other in cells:
                if (
                    other.eps == cell.eps
                    and other.norm == cell.norm
                    and other.attack.startswith(("pgd-", "segpgd-", "cospgd-"))
                ):
                    ok = mean[cell.key] >= mean[other.key] - 1e-3
                    noise_vs_pgd.append(
                        {
                            "eps": cell.eps,
                            "noise": cell.attack,
                            "attack": other.attack,
                            "noise_dice": mean[cell.key],
                            "attack_dice": mean[other.key],
                            "ok": ok,
                        }
                    )
                    if not ok:
                        checks["warnings"].append(
                            f"{cell.attack} is stronger than {other.attack} at eps {cell.eps}: check the attack"
                        )
    checks["noise_weaker_than_attack"] = noise_vs_pgd
    pgd_cells = [c for c in cells if c.attack.startswith("pgd-") and c.eps > 0]
    if config.steps_check and pgd_cells:
        cell = max(pgd_cells, key=lambda c: c.eps)
        subset = cases[:3]
        once, twice = [], []
        for cid in subset:
            case = store.load_case(cid)
            once.append(records[cell.key]["cases"][cid])
            double = attack_case(loaded.network, case, cell, settings, device, steps=2 * config.steps)
            twice.append(case_record(double, case, store.num_classes, cell, hd95=False))
        d1 = float(np.nanmean(aggregate_dice(dict(enumerate(once)))["global"]))
        d2 = float(np.nanmean(aggregate_dice(dict(enumerate(twice)))["global"]))
        checks["steps_2x"] = {
            "attack": cell.attack,
            "eps": cell.eps,
            "cases": subset,
            "dice_steps": d1,
            "dice_2x_steps": d2,
            "ok": d2 <= d1 + 0.01,
        }
        if d2 > d1 + 0.01:
            checks["warnings"].append(
                f"Dice at {2 * config.steps} steps ({d2:.3f}) is higher than at {config.steps} ({d1:.3f}): possible gradient masking"
            )
        elif d2 < d1 - 0.02:
            checks["warnings"].append(
                f"Dice drops from {d1:.3f} to {d2:.3f} with {2 * config.steps} steps: the attack has not converged; raise --steps"
            )
    return checks
