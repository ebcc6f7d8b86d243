"""The IMA confirmation's stronger-attack check (``studies/ima_protocol.md``): does a stronger attack change the
ranking of the confirmation's models?

    python benchmarks/ima_strong_check.py benchmarks/studies/ima_confirm_cxr.yaml [--max-minutes 60]
    python benchmarks/ima_strong_check.py benchmarks/studies/ima_confirm_acdc.yaml --table   # no torch

Models: every configuration of the declaration, its folds, training seed 0 (``--seeds``), each cell already
finished by ``imaseg study run`` (cells not in the records file are skipped and listed; a model missing from
the work folder, as on a fresh checkout, is trained again just before it is attacked, its record kept). Samples:
each fold's test samples (at most ``--max-samples``, evenly spaced). Budgets: :data:`BUDGETS` per study. Attacks: the default
ensemble's members at 20 steps as the evaluation runs them (seed = batch start) and the stronger attack, APGD on
soft Dice with 100 steps and 3 restarts. The per-sample ``[tp, fp, fn]`` of every attack go to
``results/NAME_strong_check.json`` (resumable: each finished model and budget is written at once), and
``--table`` writes ``results/NAME_strong_check.md``: global Dice pooled over folds under the default and under
default + stronger, each model's drop, and the ranking test of the protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from attack_reference import _counts
from scipy.stats import kendalltau
from threat_transfer import split_slices

from imaseg.attacks import APGD, AttackSettings, create_attack
from imaseg.attacks.registry import ENSEMBLE_MEMBERS
from imaseg.metrics.worst import choose_worst, mean_global_dice
from imaseg.run_model import load_run_model
from imaseg.study.cells import StudyCell, expand_cells
from imaseg.study.declaration import Study, load_study
from imaseg.study.runner import has_trained_model, run_study
from imaseg.utils.atomic import atomic_write_json, atomic_write_text
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUDGETS = {"ima_confirm_acdc": (1.0, 2.0), "ima_confirm_cxr": (4.0, 8.0)}  # L2, fixed by the protocol
STEPS = 20
STRONG_STEPS = 100
STRONG_RESTARTS = 3
STRONG = "strong/apgd-dice@100x3"
BATCH = 16
TIE = 0.005
IMA_METHOD = "ima"


def _crafts(clip: tuple[float, float] | None) -> dict:
    """name -> ``craft(model, x, y, eps, seed)``: the default's members and the stronger attack."""

    def member(kind: str):
        def craft(model, x, y, eps, seed):
            settings = AttackSettings(steps=STEPS, clip_range=clip, seed=seed)
            return create_attack(f"{kind}-l2", model, eps=eps, settings=settings)(x, y)

        return craft

    def strong(model, x, y, eps, seed):
        attack = APGD(
            model,
            eps=eps,
            norm="l2",
            steps=STRONG_STEPS,
            loss="dice",
            restarts=STRONG_RESTARTS,
            clip_range=clip,
            seed=seed,
        )
        return attack(x, y)

    crafts = {f"default/{kind}": member(kind) for kind in ENSEMBLE_MEMBERS}
    crafts[STRONG] = strong
    return crafts


def attack_model(model, x: torch.Tensor, y: torch.Tensor, eps: float, classes: int, crafts: dict) -> dict:
    """Every attack on one model at one budget, batch by batch (seed = batch start, as evaluation does)."""
    attacks = {}
    for name, craft in crafts.items():
        started, parts = time.perf_counter(), []
        for start in range(0, x.shape[0], BATCH):
            xb, yb = x[start : start + BATCH], y[start : start + BATCH]
            parts.append(_counts(model, craft(model, xb, yb, eps, start), yb, classes))
        attacks[name] = {"counts": np.concatenate(parts).tolist(), "seconds": round(time.perf_counter() - started, 2)}
    attacks["clean"] = {"counts": _counts(model, x, y, classes).tolist(), "seconds": 0.0}
    return attacks


def _model_ready(study: Study, cell: StudyCell, minutes_left: float) -> bool:
    """Train the cell's model again if this work folder has no finished one (a fresh checkout keeps only the
    records): one model at a time, just before it is attacked, so that each chunk's results are kept in the
    results file even when the session ends (``imaseg study run --rebuild-missing``: the record is kept, and the
    rebuilt model's clean predictions are checked against it). False when no time is left for it."""
    if has_trained_model(study.work, cell):
        return True
    if minutes_left <= 0:
        return False
    logging.warning("%s: no finished model in %s; training it again (its record kept)", cell.key, study.work)
    outcome = run_study(
        study, only=[cell.name], folds=[cell.fold], seeds=[cell.seed], max_minutes=minutes_left, rebuild_missing=True
    )
    if outcome.ran:
        logging.warning("%s: stale in the records (settings changed), so run and recorded again", outcome.ran)
    return has_trained_model(study.work, cell)


def run(study_path: Path, seeds: list[int], limit: int, max_minutes: float) -> Path:
    study = load_study(study_path)
    out = RESULTS / f"{study.name}_strong_check.json"
    data = json.loads(out.read_text()) if out.is_file() else {}
    data.update(study=str(study_path.resolve().relative_to(ROOT)), budgets=list(BUDGETS[study.name]))
    cells_done = set(json.loads(study.records_path.read_text())["cells"]) if study.records_path.is_file() else set()
    results = data.setdefault("cells", {})
    cells = expand_cells(study, seeds=seeds)
    started, samples = time.monotonic(), {}
    for cell in cells:
        if cell.key not in cells_done:
            logging.warning("%s: not finished by `imaseg study run`; skipped", cell.key)
            continue
        todo = [eps for eps in BUDGETS[study.name] if f"{cell.key} l2 {eps:g}" not in results]
        if not todo:
            continue
        if not _model_ready(study, cell, max_minutes - (time.monotonic() - started) / 60):
            logging.warning("time is up; rerun to continue")
            return out
        if cell.fold not in samples:  # read once per fold, not once per model
            samples[cell.fold] = split_slices(study, "test", limit, cell.fold)[:2]
        x, y = samples[cell.fold]
        run_model = load_run_model(cell.folder(study.work))
        model, crafts = run_model.network.eval(), _crafts(run_model.clip_range)
        classes = run_model.record.data_shape.num_classes if run_model.record else int(y.max()) + 1
        for eps in todo:
            if (time.monotonic() - started) / 60 > max_minutes:
                logging.warning("time is up; rerun to continue")
                return out
            attacks = attack_model(model, x, y, eps, classes, crafts)
            results[f"{cell.key} l2 {eps:g}"] = {
                "configuration": cell.name,
                "method": cell.configuration.method,
                "fold": cell.fold,
                "seed": cell.seed,
                "eps": eps,
                "attacks": attacks,
            }
            atomic_write_json(out, data, indent=None)
            default, both = _worst(attacks, False), _worst(attacks, True)
            logging.info("%s l2 %g: default %.3f, with the stronger attack %.3f", cell.key, eps, default, both)
    return out


def _chosen(attacks: dict, with_strong: bool) -> np.ndarray:
    names = [n for n in attacks if n.startswith("default/") or (with_strong and n == STRONG)]
    counts = np.stack([np.asarray(attacks[n]["counts"], dtype=float) for n in names])
    return counts[choose_worst(counts), np.arange(counts.shape[1])]


def _worst(attacks: dict, with_strong: bool) -> float:
    return float(mean_global_dice(_chosen(attacks, with_strong).sum(0)))


def ranking_test(default: dict[str, float], both: dict[str, float], ima: str, tie: float = TIE) -> list[str]:
    """The pairs (IMA setting, other configuration) whose order the stronger attack flips (ties excepted).

    >>> ranking_test({"ima": 0.50, "a": 0.40, "b": 0.498}, {"ima": 0.45, "a": 0.46, "b": 0.44}, "ima")
    ['a']
    """
    flipped = []
    for name in default:
        if name == ima:
            continue
        before, after = default[ima] - default[name], both[ima] - both[name]
        if abs(before) < tie and abs(after) < tie:
            continue
        if np.sign(before) != np.sign(after):
            flipped.append(name)
    return flipped


def pooled(data: dict, eps: float) -> tuple[dict[str, float], dict[str, float], dict[str, float], str | None]:
    """Per configuration, global Dice pooled over folds: clean, default, default + stronger; and the IMA name."""
    sums: dict[str, dict[str, np.ndarray]] = {}
    ima = None
    for cell in data["cells"].values():
        if cell["eps"] != eps:
            continue
        parts = sums.setdefault(cell["configuration"], {})
        for label, counts in (
            ("clean", np.asarray(cell["attacks"]["clean"]["counts"], dtype=float)),
            ("default", _chosen(cell["attacks"], False)),
            ("both", _chosen(cell["attacks"], True)),
        ):
            parts[label] = parts.get(label, 0) + counts.sum(0)
        if cell["method"] == IMA_METHOD:
            ima = cell["configuration"]
    columns = (
        {n: float(mean_global_dice(p[label])) for n, p in sums.items()} for label in ("clean", "default", "both")
    )
    clean, default, both = columns
    return clean, default, both, ima


def table(study_path: Path) -> Path:
    study = load_study(study_path)
    data = json.loads((RESULTS / f"{study.name}_strong_check.json").read_text())
    folds = sorted({c["fold"] for c in data["cells"].values()})
    seeds = sorted({c["seed"] for c in data["cells"].values()})
    lines = [
        f"# Stronger-attack check of `{study.name}` (`python benchmarks/ima_strong_check.py {data['study']}`)",
        "",
        f"Folds {folds}, seeds {seeds}, test samples; global Dice pooled over folds. Default: the ensemble's members",
        f"at {STEPS} steps, per-sample worst (global-Dice rule); + stronger: with APGD on soft Dice, {STRONG_STEPS} "
        f"steps, {STRONG_RESTARTS} restarts. A flip: the IMA setting's order against a configuration changes "
        f"(differences under {TIE} on both sides are ties).",
    ]
    for eps in data["budgets"]:
        clean, default, both, ima = pooled(data, eps)
        if not default:
            continue
        names = sorted(default, key=lambda n: -default[n])
        lines += [
            "",
            f"## L2 {eps:g}",
            "",
            "| configuration | clean | default | + stronger | drop |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {clean[n]:.3f} | {default[n]:.3f} | {both[n]:.3f} | {default[n] - both[n]:.3f} |" for n in names
        ]
        order_after = [both[n] for n in names]
        tau = kendalltau(range(len(names)), [-v for v in order_after]).statistic if len(names) > 1 else float("nan")
        flips = ranking_test(default, both, ima) if ima else []
        verdict = "no IMA cell" if ima is None else ("passes" if not flips else f"fails: {', '.join(flips)}")
        lines += ["", f"Kendall's tau of the order, default vs + stronger: {tau:.2f}. Ranking test: {verdict}."]
    out = RESULTS / f"{study.name}_strong_check.md"
    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="ima_confirm_acdc.yaml or ima_confirm_cxr.yaml")
    parser.add_argument("--seeds", default="0", help="training seeds whose models are attacked (default 0)")
    parser.add_argument("--max-samples", type=int, default=64, help="test samples per fold, evenly spaced")
    parser.add_argument("--max-minutes", type=float, default=float("inf"), help="start no budget after this")
    parser.add_argument("--table", action="store_true", help="only write the table from the results file")
    args = parser.parse_args()
    setup_logging(1)
    logging.getLogger("imaseg").setLevel(logging.WARNING)
    logging.getLogger("imaseg.study").setLevel(logging.INFO)  # rebuilt models: whether they match their records
    if load_study(args.study).name not in BUDGETS:
        parser.error(f"{args.study}: no budgets fixed for this study; expected one of {sorted(BUDGETS)}")
    if not args.table:
        torch.set_num_threads(2)
        run(args.study, [int(s) for s in args.seeds.split(",")], args.max_samples, args.max_minutes)
    print(table(args.study))


if __name__ == "__main__":
    main()
