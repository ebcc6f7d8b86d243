"""Scoring of ``nnunet_heart.py``'s models: which budgets each is scored at (``evaluate.tta_eps``), the
``imaseg evaluate --nnunet`` call, the Markdown table and the report of every model with and without TTA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["score_fingerprint", "score_model", "scored_budgets", "summary_table", "write_report"]


def summary_table(scores: dict[str, Any]) -> str:
    """Markdown: global Dice [95% interval over patients] per model, TTA and budget, and the agreement check;
    "not scored" where a row skipped a budget (``tta_eps``). Rows without ``eps`` have one cell per budget."""
    lines = ["| model | TTA | nnU-Net agreement | " + " | ".join(f"eps {e:g}" for e in scores["eps"]) + " |"]
    lines.append("|---|---|---|" + "---|" * len(scores["eps"]))
    for row in scores["rows"]:
        by_budget = {f"{e:g}": d for e, d in zip(row.get("eps", scores["eps"]), row["dice"], strict=True)}
        dice = [by_budget.get(f"{e:g}") for e in scores["eps"]]
        cells = ["not scored" if d is None else f"{d[0]:.3f} [{d[1]:.3f}, {d[2]:.3f}]" for d in dice]
        lines.append(f"| {row['model']} | {row['tta']} | {row['agreement']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def scored_budgets(evaluation: dict[str, Any], tta: bool) -> list[float]:
    """The budgets a model is scored at: ``eps``, or with mirroring TTA ``tta_eps`` where given (TTA costs a
    forward per mirror, 4 in 2D, 8 in 3D: scoring it at the headline budget only saves most of that)."""
    budgets = evaluation.get("tta_eps") if tta else None
    return [float(e) for e in (evaluation["eps"] if budgets is None else budgets)]


def score_fingerprint(evaluation: dict[str, Any], tta: bool) -> dict[str, Any]:
    """What a score stage depends on: the evaluation settings with the budgets that model is scored at (so that
    setting ``tta_eps`` re-scores the TTA runs only)."""
    settings = {k: v for k, v in evaluation.items() if k != "tta_eps"}
    if tta and evaluation.get("tta_eps") is not None:
        settings["eps"] = evaluation["tta_eps"]
    return settings


def score_model(results: Path, data: Path, run: Path, tta: bool, evaluation: dict[str, Any]) -> dict[str, Any]:
    """``imaseg evaluate --nnunet`` on the test folder; the global Dice per budget scored and nnU-Net's
    agreement."""
    from imaseg.cli import main as imaseg_main
    from imaseg.summary import Summary

    flags = ["--eps", ",".join(f"{e:g}" for e in scored_budgets(evaluation, tta))]
    flags += ["--attacks", ",".join(evaluation["attacks"])] if evaluation.get("attacks") else []
    flags += ["--steps", str(evaluation["steps"]), "--no-hd95", "--overlays", "2"]
    code = imaseg_main(
        ["evaluate", "--nnunet", str(results), "--fold", "0", "--data", str(data), "--run", str(run)]
        + ["--allow-outside-paths"]  # the test folder links to the source files
        + ([] if tta else ["--no-tta"])
        + flags
    )
    if code != 0:
        raise ValueError(f"imaseg evaluate --nnunet {results} failed (exit {code}; its error is above)")
    evaluations = sorted((run / "eval").glob("*/summary.json"))
    summary = Summary.read(evaluations[-1])
    attack = summary.main_attack
    if attack is None:
        raise ValueError(f"{evaluations[-1]}: no attack was evaluated; set evaluate.eps above 0")
    reference = json.loads((evaluations[-1].parent / "nnunet.json").read_text())
    curve = summary.curve(attack)
    dice = [[c.global_dice, *(c.ci_global or [float("nan")] * 2)] for c in curve.cells]
    return {"dice": dice, "eps": list(curve.eps), "agreement": float(reference["agreement"]), "attack": attack}


def write_report(out: Path, runs: list[Path]) -> None:
    """``OUT/report.html`` (and ``.md``): every scored model side by side, with and without TTA."""
    from imaseg.cli import main as imaseg_main

    title = "ACDC heart MRI through nnU-Net v2: STD and robust training, scored with and without mirroring TTA"
    if imaseg_main(["report", *map(str, runs), "--out", str(out / "report"), "--title", title]) != 0:
        raise ValueError(f"imaseg report {' '.join(map(str, runs))} failed (its error is above)")
