"""Tables and targets of the attack-reference benchmark, from the per-slice counts it committed.

    python benchmarks/attack_reference_table.py

Reads ``benchmarks/results/attack_reference_{val,test}.json`` (written by ``attack_reference.py``) and
writes ``benchmarks/results/attack_reference.md`` (the tables ``benchmarks/README.md`` quotes) and
``benchmarks/results/attack_reference_targets.json``. Per (model, budget) cell:

- the **reference** is the per-slice worst over every attack run (global-Dice rule, ``choose_worst``);
- the **default** is the worst over the default ensemble's members; a **candidate** is the worst over a
  subset of them and of the candidate members. Cost: gradient steps per slice over the previous default's (PGD
  on CE and on soft Dice, 2 x 20), the measure the choice uses; wall seconds are reported beside it but are not
  comparable between attacks here (the benchmark ran in the background and was paused while tests ran, and the
  pauses count in the seconds of whichever attack was running);
- the gap default - reference in global Dice, with a 95% interval from resampling the patients (the choice
  of member per slice kept fixed);
- the masking checks: gradient-free and transfer attacks against the default.

The rule for a cheaper default is fixed before the confirmation: on the validation split, the cheapest
candidate whose gap to the reference is <= 0.003 in every cell (ties: fewer gradient steps); on the test
split it must stay within 0.005 (issue 24's target) in every cell.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from imaseg.metrics.worst import choose_worst, mean_global_dice
from imaseg.utils.atomic import atomic_write_json, atomic_write_text

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
CHOICE_TOLERANCE = 0.003
TARGET = 0.005
BOOTSTRAP = 2000


def load(split: str) -> dict | None:
    path = RESULTS / f"attack_reference_{split}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _counts(cell: dict, names: list[str]) -> np.ndarray:
    return np.stack([np.asarray(cell["attacks"][n]["counts"], dtype=float) for n in names])  # (M, S, C, 3)


def worst(cell: dict, names: list[str]) -> tuple[float, np.ndarray]:
    """Global Dice of the per-slice worst over ``names``, and the chosen per-slice counts ``(S, C, 3)``."""
    counts = _counts(cell, names)
    chosen = counts[choose_worst(counts), np.arange(counts.shape[1])]
    return float(mean_global_dice(chosen.sum(0))), chosen


def gap_interval(a: np.ndarray, b: np.ndarray | None, cases: list[str], seed: int = 0) -> tuple[float, float]:
    """95% interval of ``global Dice(a) - global Dice(b)`` (``b`` None: of ``global Dice(a)``) resampling
    patients (the per-slice counts ``(S, C, 3)`` grouped by case)."""
    groups = [np.flatnonzero(np.asarray(cases) == c) for c in dict.fromkeys(cases)]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        pick = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        other = 0.0 if b is None else float(mean_global_dice(b[pick].sum(0)))
        draws.append(float(mean_global_dice(a[pick].sum(0))) - other)
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(low), float(high)


def _members(cell: dict) -> list[str]:
    """The default ensemble's members as the benchmark ran them."""
    return [n for n in cell["attacks"] if n.startswith("default/")]


def _pool(cell: dict) -> list[str]:
    """What a cheaper default may be made of: the default's members and the candidate members."""
    return [n for n in cell["attacks"] if n.startswith(("default/", "candidate/"))]


def _seconds(cells: list[dict], names: list[str]) -> float:
    return sum(c["attacks"][n]["seconds"] for c in cells for n in names)


def _steps(cell: dict, names: list[str], shares: list[float] | None = None) -> float:
    """Gradient steps per slice of ``names`` (each times the share of slices it ran on)."""
    shares = shares or [1.0] * len(names)
    return sum(cell["attacks"][n]["steps"] * share for n, share in zip(names, shares))


def early_stopped(cell: dict, names: list[str]) -> tuple[float, float, np.ndarray]:
    """Global Dice and gradient steps per slice of the worst case over ``names`` run in order, where a slice whose
    foreground a member already erased (no true positive left, ground truth present) skips the members after it.

    The cost is each member's steps times the share of slices it still ran on (a batch shrinks as its slices
    finish), the Dice that of the per-slice worst over the members that ran.
    """
    counts = _counts(cell, names)  # (M, S, C, 3)
    ran = np.ones(counts.shape[:2], dtype=bool)
    done = np.zeros(counts.shape[1], dtype=bool)
    has_truth = (counts[0, :, :, 0] + counts[0, :, :, 2]).sum(-1) > 0
    for m in range(len(names)):
        ran[m] = ~done
        done |= ran[m] & has_truth & (counts[m, :, :, 0].sum(-1) == 0)
    masked = np.where(ran[:, :, None, None], counts, counts[:1])  # a member that did not run repeats the first
    chosen = masked[choose_worst(masked), np.arange(counts.shape[1])]
    steps = _steps(cell, names, [float(ran[m].mean()) for m in range(len(names))])
    return float(mean_global_dice(chosen.sum(0))), steps, chosen


def candidates(cells: list[dict]) -> list[dict]:
    """Every non-empty subset of the default's and the candidate members (where every cell has them), run in full
    or with finished slices skipping the later members (:func:`early_stopped`), with its largest gap to the
    reference and its cost."""
    members = [n for n in _pool(cells[0]) if all(n in c["attacks"] for c in cells)]
    previous = sum(_steps(c, ["previous/pgd"]) for c in cells)
    references = [worst(c, list(c["attacks"]))[0] for c in cells]
    rows = []
    for size in range(1, len(members) + 1):
        for subset in itertools.combinations(members, size):
            for skip in (False, True):
                if skip:
                    outcomes = [early_stopped(c, list(subset)) for c in cells]
                    dice, steps = [d for d, _, _ in outcomes], sum(t for _, t, _ in outcomes)
                else:
                    dice = [worst(c, list(subset))[0] for c in cells]
                    steps = sum(_steps(c, list(subset)) for c in cells)
                rows.append(
                    {
                        "members": [m.split("/", 1)[1] for m in subset],
                        "skip_finished_slices": skip,
                        "largest_gap": max(d - ref for d, ref in zip(dice, references)),
                        "cost_over_previous": steps / previous,
                        "steps": sum(cells[0]["attacks"][m]["steps"] for m in subset),
                        "seconds_over_previous": _seconds(cells, list(subset)) / _seconds(cells, ["previous/pgd"]),
                    }
                )
    return sorted(rows, key=lambda r: (r["cost_over_previous"], r["steps"]))


def choose(rows: list[dict]) -> dict | None:
    """The cheapest candidate within :data:`CHOICE_TOLERANCE` of the reference in every cell."""
    fitting = [r for r in rows if r["largest_gap"] <= CHOICE_TOLERANCE]
    return fitting[0] if fitting else None


def cell_rows(data: dict, members: list[str] | None = None, skip: bool = False) -> list[dict]:
    """Per cell: reference, default (or ``members``, with finished slices skipping later members where
    ``skip``), the gap with its interval, and the masking checks."""
    rows = []
    for key, cell in data["cells"].items():
        names = list(cell["attacks"])
        pool = {n.split("/", 1)[1]: n for n in _pool(cell)}
        chosen_members = [pool[m] for m in members] if members else _members(cell)
        reference, reference_counts = worst(cell, names)
        if skip:
            default, _, default_counts = early_stopped(cell, chosen_members)
        else:
            default, default_counts = worst(cell, chosen_members)
        low, high = gap_interval(default_counts, reference_counts, data["cases"])
        single = {n: float(mean_global_dice(np.asarray(a["counts"]).sum(0))) for n, a in cell["attacks"].items()}
        masking = {n: d for n, d in single.items() if n.startswith(("gradient-free/", "transfer/"))}
        rows.append(
            {
                "cell": key,
                "reference": reference,
                "default": default,
                "cascade": single.get("chosen/apgd-cascade"),
                "gap": default - reference,
                "gap_interval": [low, high],
                "strongest_single": min(single, key=lambda n: single[n]),
                "masking": masking,
                "masking_beats_default": sorted(n for n, d in masking.items() if d < default - 1e-9),
            }
        )
    return rows


def reference_subsets(cells: list[dict]) -> list[dict]:
    """For each size, the subset of the reference's own 100-step APGD attacks with the smallest largest gap to
    the reference: how much of the reference long APGD alone reaches, at what cost."""
    references = [worst(c, list(c["attacks"]))[0] for c in cells]
    names = [n for n in cells[0]["attacks"] if n.startswith("reference/")]
    rows = []
    for size in range(1, len(names) + 1):
        gaps = {
            subset: max(worst(c, list(subset))[0] - r for c, r in zip(cells, references))
            for subset in itertools.combinations(names, size)
        }
        best = min(gaps, key=lambda subset: gaps[subset])
        steps = sum(cells[0]["attacks"][n]["steps"] for n in best)
        rows.append({"members": [n.split("/", 1)[1] for n in best], "steps": steps, "largest_gap": gaps[best]})
    return rows


def reference_subsets_markdown(split: str, rows: list[dict]) -> str:
    lines = [
        f"### Split `{split}`: how close long APGD alone comes to the reference (largest gap over the cells)",
        "",
        "| 100-step APGD losses | gradient steps per slice | largest gap |",
        "|---|---|---|",
    ]
    lines += [f"| {', '.join(r['members'])} | {r['steps']} | {r['largest_gap']:+.4f} |" for r in rows]
    return "\n".join(lines) + "\n"


def markdown(split: str, rows: list[dict]) -> str:
    lines = [
        f"### Split `{split}`: the default ensemble against the reference worst case (global Dice)",
        "",
        "| cell | reference | default | gap (95% CI over patients) | apgd-cascade | strongest single attack | "
        "gradient-free / transfer |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = r["gap_interval"]
        masking = ", ".join(f"{n.split('/')[-1]} {d:.3f}" for n, d in r["masking"].items())
        cascade = "" if r.get("cascade") is None else f"{r['cascade']:.3f} ({r['cascade'] - r['reference']:+.4f})"
        lines.append(
            f"| {r['cell']} | {r['reference']:.3f} | {r['default']:.3f} | {r['gap']:+.4f} ({low:+.4f}..{high:+.4f}) "
            f"| {cascade} | {r['strongest_single']} | {masking} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    report, targets = ["# Attack-reference benchmark (generated by benchmarks/attack_reference_table.py)", ""], {}
    val, test = load("val"), load("test")
    chosen = None
    if val:
        rows = candidates(list(val["cells"].values()))
        chosen = choose(rows)
        targets["val"] = {"candidates": rows, "chosen": chosen, "cells": cell_rows(val)}
        report.append(markdown("val", targets["val"]["cells"]))
        targets["val"]["reference_subsets"] = reference_subsets(list(val["cells"].values()))
        report.append(reference_subsets_markdown("val", targets["val"]["reference_subsets"]))
        report.append(f"Cheapest candidate within {CHOICE_TOLERANCE} of the reference in every val cell: {chosen}\n")
    if test:
        default_rows = cell_rows(test)
        cascade = [r for r in default_rows if r.get("cascade") is not None]
        targets["test"] = {
            "cells": default_rows,
            "default_within_target": all(r["gap"] <= TARGET for r in default_rows),
            "cascade_within_target": bool(cascade) and all(r["cascade"] - r["reference"] <= TARGET for r in cascade),
            "cascade_not_weaker_than_default": bool(cascade) and all(r["cascade"] <= r["default"] for r in cascade),
        }
        report.append(markdown("test", default_rows))
        targets["test"]["reference_subsets"] = reference_subsets(list(test["cells"].values()))
        report.append(reference_subsets_markdown("test", targets["test"]["reference_subsets"]))
        if chosen:
            chosen_rows = cell_rows(test, chosen["members"], chosen["skip_finished_slices"])
            targets["test"]["chosen_cells"] = chosen_rows
            targets["test"]["chosen_within_target"] = all(r["gap"] <= TARGET for r in chosen_rows)
            report.append(markdown(f"test, candidate {'+'.join(chosen['members'])}", chosen_rows))
    atomic_write_text(RESULTS / "attack_reference.md", "\n".join(report))
    atomic_write_json(RESULTS / "attack_reference_targets.json", targets)
    print("\n".join(report))


if __name__ == "__main__":
    main()
