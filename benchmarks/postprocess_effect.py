"""What connected-component post-processing does to clean and attacked Dice, on ACDC and the chest X-rays.

    python benchmarks/postprocess_effect.py

Models: STD and PGD-AT of ``benchmarks/studies/models_acdc_fold1.yaml`` (ACDC fold 1, scored on its 4
validation patients as that study does) and of ``benchmarks/studies/models_cxr_fold0.yaml`` (chest X-ray
lungs, fold 0 test images), each trained first where missing. Every model is evaluated with the study's own
settings (default attack ensemble, 20 steps) three times: ``--postprocess none`` (the study's evaluation,
reused), ``lcc`` (largest component per class) and ``lcc2`` (two largest: both lungs are one class). The
attacks optimise the raw logits in every case; only the scored masks change.

Writes ``benchmarks/results/postprocess_effect.json`` and ``.md``: global Dice (95% interval over patients)
clean and under the default ensemble at the study's headline budget, per post-processor.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from pathlib import Path

from imaseg.evaluation.evaluate import evaluate
from imaseg.run import RunDir
from imaseg.study.cells import expand_cells
from imaseg.study.declaration import load_study
from imaseg.study.runner import plan_cells, run_study
from imaseg.utils.atomic import atomic_write_json, atomic_write_text
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
STUDIES = {
    "ACDC": (ROOT / "benchmarks" / "studies" / "models_acdc_fold1.yaml", ["std", "pgd-at eps 1"], 1.0),
    "chest X-ray": (ROOT / "benchmarks" / "studies" / "models_cxr_fold0.yaml", ["std", "pgd-at eps 4"], 4.0),
}
POSTPROCESSORS = ("none", "lcc", "lcc2")
ATTACK = "worst-l2"


def _cell(summary, budget: float) -> dict:
    robust = summary.curve(ATTACK).cell(budget)
    return {
        "clean": summary.clean_global,
        "clean_ci": list(summary.clean.interval or ()),
        "attacked": robust.global_dice,
        "attacked_ci": list(robust.interval or ()),
    }


def measure(organs: list[str], results: dict) -> dict:
    for organ in organs:
        path, names, budget = STUDIES[organ]
        study = load_study(path)
        run_study(study, only=names, rerun_missing=True)
        for plan in plan_cells(study, expand_cells(study, only=names), study.work):
            row = results.setdefault(f"{organ} {plan.cell.name}", {"budget": budget})
            for name in POSTPROCESSORS:
                config = replace(
                    plan.evaluate, postprocess=name, tag="default" if name == "none" else f"default-{name}"
                )
                evaluate(plan.run, config, progress=False)
                row[name] = _cell(RunDir(plan.run).evaluation(config.tag).read_summary(), budget)
                logging.getLogger(__name__).warning("%s %s %s", organ, plan.cell.name, row[name])
    return results


def markdown(results: dict) -> str:
    def fmt(cell: dict, key: str) -> str:
        low, high = cell[f"{key}_ci"] or (float("nan"), float("nan"))
        return f"{cell[key]:.3f} ({low:.3f}..{high:.3f})"

    lines = [
        "| model | budget | "
        + " | ".join(f"clean, {p}" for p in POSTPROCESSORS)
        + " | "
        + " | ".join(f"attacked, {p}" for p in POSTPROCESSORS)
        + " |",
        "|---" * (2 + 2 * len(POSTPROCESSORS)) + "|",
    ]
    for model, row in results.items():
        cells = [fmt(row[p], "clean") for p in POSTPROCESSORS] + [fmt(row[p], "attacked") for p in POSTPROCESSORS]
        lines.append(f"| {model} | L2 {row['budget']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--organs", default=",".join(STUDIES), help=f"comma-separated, of {', '.join(STUDIES)}")
    args = parser.parse_args()
    setup_logging(0)
    logging.getLogger("imaseg").setLevel(logging.WARNING)
    out = ROOT / "benchmarks" / "results" / "postprocess_effect.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    results = measure([o.strip() for o in args.organs.split(",")], results)
    atomic_write_json(out, results)
    table = markdown(results)
    atomic_write_text(ROOT / "benchmarks" / "results" / "postprocess_effect.md", table)
    print(table)


if __name__ == "__main__":
    main()
