"""How strong is imaseg's default attack? Against public segmentation attacks, on real ACDC heart models.

    pip install cospgd==0.1.3 && pip install --no-deps adv-lib==0.2.8   # the public attacks' packages
    python benchmarks/attack_strength.py [--slices 64] [--steps 20]

Models: the study ``benchmarks/studies/attack_strength.yaml`` (ACDC fold 0, 2D slices at 128 x 128,
intensities in [0, 1]: STD trained from scratch, and IMA (voxel) fine-tuned from it), run first through
``imaseg.study`` (trained and evaluated once, then skipped).

Attacks, all with the same budgets, clip range [0, 1], steps and random start, on the first ``--slices``
test slices (global voxel Dice over them, mean over RV / MYO / LV):

- public: SegPGD and CosPGD as the ``cospgd`` package implements them (its loss scalings and its L2 / Linf
  steps), and a PGD on adv-lib's difference-of-logits-ratio loss (``adv_lib.utils.losses``), each with
  step ``2.5 eps / steps``;
- imaseg's previous default (PGD with CE and with soft Dice, noise, their worst case) and the new default
  (APGD-Dice, APGD-DLR, CosPGD, SegPGD, noise, and their worst case chosen for the lowest global Dice).

Writes ``benchmarks/results/attack_strength.json`` (every (model, budget) cell with each attack's Dice and
seconds, then the targets) and prints a table. Target (issue 12): the default worst case is at most each
public attack's Dice at every (model, budget), at no more than 2x the previous default's attack time.
Resumable: the models are the study's, finished cells are kept in the study's work folder.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imaseg.attacks import AttackSettings, create_attack
from imaseg.cache.reader import CaseStore
from imaseg.metrics.dice import confusion_counts
from imaseg.metrics.worst import choose_worst, mean_global_dice
from imaseg.run_model import load_run_model
from imaseg.study.cells import cache_folder, expand_cells, train_settings
from imaseg.study.declaration import Study, load_study
from imaseg.study.runner import run_study
from imaseg.utils.atomic import atomic_write_json
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "benchmarks" / "studies" / "attack_strength.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "attack_strength.json"
MODELS = {"STD": "std", "IMA": "ima"}  # label -> the study's configuration
BUDGETS = [("l2", 0.25), ("l2", 0.5), ("l2", 1.0), ("linf", 2 / 255), ("linf", 8 / 255)]
NEW_DEFAULT = ["apgd-dice", "apgd-dlr", "cospgd", "segpgd", "noise"]
OLD_DEFAULT = ["pgd", "noise"]  # pgd with losses ce and dice: two attacks
DEFAULTS = {"imaseg default (new)": NEW_DEFAULT, "imaseg default (previous)": OLD_DEFAULT}
CLIP = (0.0, 1.0)
BATCH = 16


def _dlr_loss(logits: torch.Tensor, y: torch.Tensor, t: int, steps: int) -> torch.Tensor:
    from adv_lib.utils.losses import difference_of_logits_ratio

    flat = logits.movedim(1, -1).reshape(-1, logits.shape[1])
    return -difference_of_logits_ratio(flat, y.reshape(-1)).mean()


def _segpgd_loss(logits: torch.Tensor, y: torch.Tensor, t: int, steps: int) -> torch.Tensor:
    from cospgd import functions as cos

    return cos.segpgd_scale(logits, y, F.cross_entropy(logits, y, reduction="none"), t, steps)


def _cospgd_loss(logits: torch.Tensor, y: torch.Tensor, t: int, steps: int) -> torch.Tensor:
    from cospgd import functions as cos

    ce = F.cross_entropy(logits, y, reduction="none")
    return cos.cospgd_scale(logits, y, ce, num_classes=logits.shape[1]).mean()


PublicLoss = Callable[[torch.Tensor, torch.Tensor, int, int], torch.Tensor]
PUBLIC: dict[str, PublicLoss] = {
    "segpgd (cospgd)": _segpgd_loss,
    "cospgd (cospgd)": _cospgd_loss,
    "dlr-pgd (adv-lib)": _dlr_loss,
}


def _models(study: Study) -> dict[str, Path]:
    """The study's STD and IMA run folders, trained (and evaluated) first where they are not here yet."""
    run_study(study, only=list(MODELS.values()), rerun_missing=True)
    cells = {c.name: c for c in expand_cells(study, only=list(MODELS.values()))}
    return {label: cells[name].folder(study.work) for label, name in MODELS.items()}


def _slices(cache: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    test = CaseStore(cache).samples("test", 0)
    return test.images[:count].float(), test.labels[:count, 0].long()


def _public(loss: PublicLoss, model, x, y, norm: str, eps: float, steps: int, seed: int) -> torch.Tensor:
    """One public attack on one batch; returns the final iterate (as the packages do)."""
    from cospgd import functions as cos

    torch.manual_seed(seed)
    alpha = 2.5 * eps / steps
    init, step = (cos.init_l2, cos.step_l2) if norm == "l2" else (cos.init_linf, cos.step_inf)
    adv = init(x, eps, clamp_min=CLIP[0], clamp_max=CLIP[1])
    for t in range(steps):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(model(adv), y, t, steps), adv)
        adv = step(adv.detach(), eps, grad, x, alpha, False, clamp_min=CLIP[0], clamp_max=CLIP[1])
    return adv.detach()


def _counts(model, adv: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        pred = model(adv).argmax(1)
    tp, fp, fn = confusion_counts(pred, y, 4)
    return torch.stack([tp[:, 1:], fp[:, 1:], fn[:, 1:]], -1).numpy().astype(float)  # (S, 3 classes, 3)


def _run_attack(name: str, model, x, y, norm: str, eps: float, steps: int) -> tuple[np.ndarray, float]:
    """Per-slice counts of one attack over all slices, in batches (seed + batch start, as evaluation does)."""
    started, parts = time.perf_counter(), []
    for start in range(0, x.shape[0], BATCH):
        xb, yb = x[start : start + BATCH], y[start : start + BATCH]
        if name in PUBLIC:
            adv = _public(PUBLIC[name], model, xb, yb, norm, eps, steps, start)
        else:
            kind = name.removeprefix("imaseg ")
            settings = AttackSettings(steps=steps, losses=("ce", "dice"), clip_range=CLIP, seed=start)
            adv = create_attack(f"{kind}-{norm}", model, eps=eps, settings=settings)(xb, yb)
        parts.append(_counts(model, adv, yb))
    return np.concatenate(parts), time.perf_counter() - started


def _worst(counts: list[np.ndarray]) -> float:
    """Global Dice of the per-slice worst over ``counts`` (each ``(S, C, 3)``), chosen for the lowest Dice."""
    stacked = np.stack(counts)
    return float(mean_global_dice(stacked[choose_worst(stacked), np.arange(stacked.shape[1])].sum(0)))


def _cell(model, x, y, norm: str, eps: float, steps: int) -> dict:
    counts, seconds = {}, {}
    for name in [*PUBLIC, *(f"imaseg {k}" for k in dict.fromkeys(NEW_DEFAULT + OLD_DEFAULT))]:
        counts[name], seconds[name] = _run_attack(name, model, x, y, norm, eps, steps)
    dice = {name: float(mean_global_dice(c.sum(0))) for name, c in counts.items()}
    for label, members in DEFAULTS.items():
        dice[label] = _worst([counts[f"imaseg {m}"] for m in members])
        seconds[label] = sum(seconds[f"imaseg {m}"] for m in members)
    dice["public attacks, worst case"] = _worst([counts[name] for name in PUBLIC])  # for reference
    return {"dice": dice, "seconds": seconds}


def _targets(results: dict) -> dict:
    def beaten(cell: dict, label: str) -> bool:
        return any(cell["dice"][label] > cell["dice"][p] + 1e-9 for p in PUBLIC)

    new = sum(c["seconds"]["imaseg default (new)"] for c in results.values())
    old = sum(c["seconds"]["imaseg default (previous)"] for c in results.values())
    return {
        "cells_where_a_public_attack_beats_the_new_default": [
            key for key, cell in results.items() if beaten(cell, "imaseg default (new)")
        ],
        "cells_where_a_public_attack_beats_the_previous_default": sum(
            beaten(c, "imaseg default (previous)") for c in results.values()
        ),
        "attack_time_new_over_previous": new / old if old else float("nan"),
    }


def _attack_cells(models: dict[str, Path], x, y, steps: int, partial: Path) -> dict:
    """Every (model, budget) cell; finished ones are read back from ``partial``."""
    results = json.loads(partial.read_text()) if partial.is_file() else {}
    for label, run in models.items():
        network = load_run_model(run).network
        for norm, eps in BUDGETS:
            key = f"{label} {norm} {eps:.6g}"
            if key not in results:
                results[key] = {"model": label, "norm": norm, "eps": eps, **_cell(network, x, y, norm, eps, steps)}
                atomic_write_json(partial, results)
            print(key.ljust(22), "  ".join(f"{k}: {v:.3f}" for k, v in results[key]["dice"].items()))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=64, help="the first N test slices of fold 0")
    parser.add_argument("--steps", type=int, default=20, help="steps of every attack")
    args = parser.parse_args()
    setup_logging(0)
    logging.getLogger("imaseg").setLevel(logging.WARNING)
    torch.set_num_threads(2)
    study = load_study(STUDY)
    models = _models(study)
    x, y = _slices(cache_folder(study.work), args.slices)
    results = _attack_cells(models, x, y, args.steps, study.work / "public_attacks.json")
    epochs = {c.name: train_settings(study, c)["epochs"] for c in expand_cells(study, only=list(MODELS.values()))}
    targets = _targets(results)
    atomic_write_json(
        RESULTS,
        {
            "slices": int(x.shape[0]),
            "steps": args.steps,
            "study": str(STUDY.relative_to(ROOT)),
            "epochs": {label: epochs[name] for label, name in MODELS.items()},
            "cells": list(results.values()),  # per (model, budget): each attack's Dice and seconds
            "targets": targets,
        },
    )
    print(json.dumps(targets, indent=1))


if __name__ == "__main__":
    main()
