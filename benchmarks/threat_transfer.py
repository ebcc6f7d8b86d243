"""Does robustness carry across threat models? Every model of ACDC fold 1 (or of the chest X-rays' fold 0) under
every threat kind.

    python benchmarks/threat_transfer.py [--slices 64] [--max-minutes 60]
    python benchmarks/threat_transfer.py --organ cxr     # chest X-rays: models_cxr_fold0.yaml, no k-space kind

Models: ``benchmarks/studies/models_acdc_fold1.yaml`` (STD, PGD-AT L2, TRADES L2, IMA voxel, PGD-AT against a
+/-20 % bias field, PGD-AT against noise at 20 dB SNR), trained first where missing. Slices: ``--slices``
evenly spaced slices of fold 1's test patients. Per model and threat kind, at each of the kind's budgets: the
optimised worst case (20 steps, as the evaluation runs it), and at the kind's headline budget also 100 random
draws of the same budget (each slice keeps its worst draw). Threat kinds: the default L2 ensemble (``worst-l2``)
and the physical kinds a cardiac MR meets: bias field (``rel``), noise at an SNR (``nsr``), k-space artefact
(``asr``), misregistration (``mm``; here in voxels of the 96 x 96 model input: ACDC's spacing is unknown,
its files say 1 mm).

Writes ``benchmarks/results/threat_transfer[_cxr].json`` (per cell the per-slice ``[tp, fp, fn]``, seconds, and the
slices' patients) after every (model, kind) cell (resumable), and ``benchmarks/results/threat_transfer.md``:
global Dice per model and kind at the headline budget with a 95% interval over patients, and issue 28's
checks (the optimised case at least as damaging as 100 random draws; its cost against a 20-step L2 PGD, timed
just before the cell where the cell records it). ``--rerun affine-mm`` attacks a kind's cells again (once: a rerun
cell is marked, so a resumed rerun goes on where it stopped), after a change of its optimiser.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from attack_reference import CLIP, _counts
from attack_reference_table import gap_interval

from imaseg.attacks import AttackSettings, create_attack
from imaseg.attacks.registry import attack_spec
from imaseg.cache.reader import CaseStore
from imaseg.metrics.worst import mean_global_dice
from imaseg.run_model import load_run_model
from imaseg.study.cells import cache_folder, expand_cells
from imaseg.study.declaration import load_study
from imaseg.study.runner import run_study
from imaseg.utils.atomic import atomic_write_json, atomic_write_text
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Organ:
    """One data set of the table: its models study, its models, its threats and its classes."""

    study: Path
    models: dict[str, str]  # row label -> configuration name
    threats: dict[str, tuple[tuple[float, ...], float, str]]  # attack -> (budgets, headline budget, random baseline)
    classes: int
    l2_seconds_eps: float  # budget of the 20-step L2 PGD the cost is compared with


ORGANS = {
    "acdc": Organ(
        ROOT / "benchmarks" / "studies" / "models_acdc_fold1.yaml",
        {
            "STD": "std",
            "PGD-AT L2": "pgd-at eps 1",
            "TRADES L2": "trades eps 1",
            "IMA L2": "ima voxel eps_max 2",
            "PGD-AT bias field": "pgd-at bias-field 0.2",
            "PGD-AT SNR noise": "pgd-at snr-noise 0.1",
        },
        {
            "worst-l2": ((0.5, 1.0, 2.0), 1.0, "noise-l2"),
            "bias-field-rel": ((0.1, 0.2, 0.3), 0.2, "bias-field-random-rel"),
            "snr-noise-nsr": ((0.03, 0.1, 0.2), 0.1, "snr-noise-random-nsr"),
            "kspace-asr": ((0.05, 0.1, 0.2), 0.1, "kspace-random-asr"),
            "affine-mm": ((1.0, 2.0, 4.0), 2.0, "affine-random-mm"),
        },
        4,
        1.0,
    ),
    # chest X-rays: no k-space; a smooth intensity non-uniformity (heel effect, detector gain) as the bias field
    "cxr": Organ(
        ROOT / "benchmarks" / "studies" / "models_cxr_fold0.yaml",
        {
            "STD": "std",
            "PGD-AT L2": "pgd-at eps 4",
            "IMA L2": "ima voxel eps_max 4",
            "PGD-AT SNR noise": "pgd-at snr-noise 0.1",
        },
        {
            "worst-l2": ((2.0, 4.0, 8.0), 4.0, "noise-l2"),
            "bias-field-rel": ((0.1, 0.2, 0.3), 0.2, "bias-field-random-rel"),
            "snr-noise-nsr": ((0.03, 0.1, 0.2), 0.1, "snr-noise-random-nsr"),
            "affine-mm": ((1.0, 2.0, 4.0), 2.0, "affine-random-mm"),
        },
        2,
        4.0,
    ),
}
BATCH, STEPS, DRAWS = 16, 20, 100


def _attack(name: str, model, x, y, eps: float, classes: int, draws: int = 1) -> tuple[np.ndarray, float]:
    started, parts = time.perf_counter(), []
    for start in range(0, x.shape[0], BATCH):
        xb, yb = x[start : start + BATCH], y[start : start + BATCH]
        settings = AttackSettings(steps=STEPS, losses=("ce",), clip_range=CLIP, seed=start, noise_draws=draws)
        adversarial = xb if eps == 0 else create_attack(name, model, eps=eps, settings=settings)(xb, yb)
        parts.append(_counts(model, adversarial, yb, classes))
    return np.concatenate(parts), time.perf_counter() - started


def threat_cell(model, x, y, organ: Organ, threat: str) -> dict:
    budgets, headline, baseline = organ.threats[threat]
    cell: dict = {"optimised": {}, "seconds": {}}
    cell["l2 seconds"] = round(_attack("pgd-l2", model, x, y, organ.l2_seconds_eps, organ.classes)[1], 3)
    for eps in budgets:
        counts, seconds = _attack(threat, model, x, y, eps, organ.classes)
        cell["optimised"][f"{eps:g}"], cell["seconds"][f"{eps:g}"] = counts.tolist(), round(seconds, 3)
    counts, seconds = _attack(baseline, model, x, y, headline, organ.classes, draws=DRAWS)
    cell["random"] = {"eps": headline, "draws": DRAWS, "counts": counts.tolist(), "seconds": round(seconds, 3)}
    return cell


def split_slices(
    study, split: str, count: int, fold: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """``count`` evenly spaced slices of ``split`` (train / val / test) of ``fold`` (default: the study's first), with
    their cases."""
    samples = CaseStore(cache_folder(study.work)).samples(split, study.folds[0] if fold is None else fold)
    index = np.unique(np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int))
    return samples.images[index].float(), samples.labels[index, 0].long(), [samples.cases[i] for i in index]


def _dice(counts) -> float:
    return float(mean_global_dice(np.asarray(counts, dtype=float).sum(0)))


def print_search_summary(rows: list[dict], names: list[str], random: str, l2: str) -> None:
    """Per optimiser variant (a key of every row: ``{"dice", "seconds"}``): on how many models (rows) it is at least as
    damaging as the random baseline ``random``, its largest gap to it, and its largest cost over the L2 PGD ``l2``."""
    for name in names:
        wins = sum(r[name]["dice"] <= r[random]["dice"] for r in rows)
        gap = max(r[name]["dice"] - r[random]["dice"] for r in rows)
        cost = max(r[name]["seconds"] / r[l2]["seconds"] for r in rows)
        print(f"{name:40s} beats random on {wins}/{len(rows)}, largest gap {gap:+.4f}, cost <= {cost:.2f}x")


def table(results: dict, organ: Organ) -> str:
    """Markdown: global Dice per model (rows) and threat at its headline budget (columns), with intervals."""
    cases, threats = results["cases"], organ.threats
    heads = [f"{t} {threats[t][1]:g} {attack_spec(t).norms[0] if t != 'worst-l2' else ''}".strip() for t in threats]
    lines = ["| model | clean | " + " | ".join(heads) + " |", "|---" * (len(threats) + 2) + "|"]
    checks = []
    for label, cells in results["models"].items():
        if "clean" not in cells:
            continue
        clean = np.asarray(cells["clean"], dtype=float)
        row = [label, f"{_dice(clean):.3f}"]
        for threat, (_, headline, _) in threats.items():
            if threat not in cells:
                row.append("")
                continue
            attacked = np.asarray(cells[threat]["optimised"][f"{headline:g}"], dtype=float)
            low, high = gap_interval(attacked, None, cases)
            row.append(f"{_dice(attacked):.3f} ({low:.3f}..{high:.3f})")
            random = _dice(cells[threat]["random"]["counts"])
            seconds = cells[threat]["seconds"][f"{headline:g}"]
            row_l2 = cells.get("pgd-l2 seconds", float("nan"))
            l2 = cells[threat].get("l2 seconds", row_l2)  # timed with the cell where it was, else once per model
            checks.append((label, threat, _dice(attacked), random, seconds / l2))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"| model | threat | optimised | worst of {DRAWS} random | optimised at least as damaging | seconds / 20-step L2 PGD |",
        "|---|---|---|---|---|---|",
    ]
    for label, threat, optimised, random, ratio in checks:
        lines.append(
            f"| {label} | {threat} | {optimised:.3f} | {random:.3f} | {'yes' if optimised <= random else 'NO'} | {ratio:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--organ", choices=tuple(ORGANS), default="acdc", help="acdc (default) or cxr (chest X-rays)")
    parser.add_argument("--slices", type=int, default=64, help="evenly spaced test slices (default 64)")
    parser.add_argument("--max-minutes", type=float, default=float("inf"), help="start no cell after this")
    parser.add_argument(
        "--rerun", action="append", default=[], metavar="THREAT", help="attack this threat's cells again (repeatable)"
    )
    args = parser.parse_args()
    setup_logging(0)
    logging.getLogger("imaseg").setLevel(logging.WARNING)
    torch.set_num_threads(2)
    organ = ORGANS[args.organ]
    study = load_study(organ.study)
    run_study(study, only=list(organ.models.values()), rerun_missing=True)
    cells = {c.name: c for c in expand_cells(study)}
    x, y, cases = split_slices(study, "test", args.slices)
    suffix = "" if args.organ == "acdc" else f"_{args.organ}"
    out = RESULTS / f"threat_transfer{suffix}.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    results.update(cases=cases, study=str(organ.study.relative_to(ROOT)), steps=STEPS)
    started = time.monotonic()
    for label, name in organ.models.items():
        model = load_run_model(cells[name].folder(study.work)).network.eval()
        done = results.setdefault("models", {}).setdefault(label, {})
        if "clean" not in done:
            done["clean"] = _attack("noise-l2", model, x, y, 0.0, organ.classes)[0].tolist()
            l2 = _attack("pgd-l2", model, x, y, organ.l2_seconds_eps, organ.classes)  # 20 steps, loss ce
            done["pgd-l2 seconds"] = round(l2[1], 3)
        for threat in organ.threats:
            if threat in args.rerun and done.get(threat, {}).get("rerun") is not True:
                done.pop(threat, None)
            if threat in done:
                continue
            if (time.monotonic() - started) / 60 > args.max_minutes:
                print("time is up; rerun to continue")
                return
            done[threat] = threat_cell(model, x, y, organ, threat) | ({"rerun": True} if threat in args.rerun else {})
            atomic_write_json(out, results, indent=None)
            print(label, threat, {k: round(_dice(v), 3) for k, v in done[threat]["optimised"].items()}, flush=True)
    atomic_write_text(RESULTS / f"threat_transfer{suffix}.md", table(results, organ))
    print(table(results, organ))


if __name__ == "__main__":
    main()
