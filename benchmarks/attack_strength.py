"""How strong is imaseg's default attack? Against public segmentation attacks, on real ACDC heart models.

    pip install cospgd==0.1.3 && pip install --no-deps adv-lib==0.2.8   # the public attacks' packages
    python benchmarks/attack_strength.py [--out benchmarks/work/attack_strength] [--slices 64] [--steps 20]

Models: the ACDC models of the benchmarks (fold 0, 2D slices at 128 x 128, intensities in [0, 1]): STD
trained from scratch, and IMA (voxel) fine-tuned from it, as ``robust_training_acdc.py`` trains them (fewer
epochs here, set by ``--std-epochs`` / ``--robust-epochs``); trained once, then reused.

Attacks, all with the same budgets, clip range [0, 1], steps and random start, on the first ``--slices``
test slices (global voxel Dice over them, mean over RV / MYO / LV):

- public: SegPGD and CosPGD as the ``cospgd`` package implements them (its loss scalings and its L2 / Linf
  steps), and a PGD on adv-lib's difference-of-logits-ratio loss (``adv_lib.utils.losses``), each with
  step ``2.5 eps / steps``;
- imaseg's previous default (PGD with CE and with soft Dice, noise, their worst case) and the new default
  (APGD-Dice, APGD-DLR, CosPGD, SegPGD, noise, and their worst case chosen for the lowest global Dice).

Writes ``benchmarks/results/attack_strength.json`` and prints a table. Target (issue 12): the default worst
case is at most each public attack's Dice at every (model, budget), at no more than 2x the previous
default's attack time. Resumable: trained models and finished cells are kept in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imaseg.attacks import AttackSettings, create_attack
from imaseg.cache.reader import CaseStore
from imaseg.cache.writer import preprocess_dataset
from imaseg.config import config_from_dict
from imaseg.evaluation.loader import load_run
from imaseg.metrics.dice import confusion_counts
from imaseg.metrics.worst import choose_worst, mean_global_dice
from imaseg.pipeline import StageRunner
from imaseg.training.config import TrainConfig
from imaseg.training.trainer import train
from imaseg.transforms.chain import PreprocessConfig
from imaseg.utils.atomic import atomic_write_json
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "acdc_heart"
BUDGETS = [("l2", 0.25), ("l2", 0.5), ("l2", 1.0), ("linf", 2 / 255), ("linf", 8 / 255)]
NEW_DEFAULT = ["apgd-dice", "apgd-dlr", "cospgd", "segpgd", "noise"]
OLD_DEFAULT = ["pgd", "noise"]  # pgd with losses ce and dice: two attacks
CLIP = (0.0, 1.0)
BATCH = 16


def _models(out: Path, args) -> dict[str, Path]:
    """Preprocess ACDC and train STD, then IMA (voxel) fine-tuned from it; stages are recorded and reused."""
    stages = StageRunner(out)
    cache = out / "cache"
    pre = PreprocessConfig(
        intensity="none", spatial_size=[128, 128], folds=5, val_groups=0, group_regex=r"^(patient\d+)", seed=0
    )
    stages.run(
        "preprocess",
        {"cache": str(cache)},
        lambda _r: preprocess_dataset(DATA, cache, pre, progress=False)["num_samples"],
    )
    common = {"batch_size": 16, "clip_range": [0.0, 1.0], "val_steps": 0, "tensorboard": False, "seed": 0, "threads": 2}
    std = config_from_dict(
        TrainConfig, {**common, "method": "std", "epochs": args.std_epochs, "lr": 2e-3, "warmup_epochs": 2}
    )
    stages.run(
        "train-std",
        {"config": str(std)},
        lambda r: train(cache, out / "std", std, resume=r, overwrite=not r)["epoch"],
        after=["preprocess"],
    )
    ima = config_from_dict(
        TrainConfig,
        {
            **common,
            "method": "ima",
            "epochs": args.robust_epochs,
            "lr": 1e-3,
            "warmup_epochs": 0,
            "schedule": "constant",
            "ima_margin": "voxel",
            "ima_delta": 0.25,
            "ima_eps_max": 1.0,
            "ima_steps": 10,
            "init": str(out / "std" / "checkpoints" / "last.pt"),
        },
    )
    stages.run(
        "train-ima",
        {"config": str(ima)},
        lambda r: train(cache, out / "ima", ima, resume=r, overwrite=not r)["epoch"],
        after=["train-std"],
    )
    return {"STD": out / "std", "IMA": out / "ima"}


def _slices(cache: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    test = CaseStore(cache).samples("test", 0)
    return test.images[:count].float(), test.labels[:count, 0].long()


def _public(name: str, model, x, y, norm: str, eps: float, steps: int, seed: int) -> torch.Tensor:
    """One public attack on one batch; returns the final iterate (as the packages do)."""
    from adv_lib.utils.losses import difference_of_logits_ratio
    from cospgd import functions as cos

    torch.manual_seed(seed)
    alpha = 2.5 * eps / steps
    init, step = (cos.init_l2, cos.step_l2) if norm == "l2" else (cos.init_linf, cos.step_inf)
    adv = init(x, eps, clamp_min=CLIP[0], clamp_max=CLIP[1])
    for t in range(steps):
        adv.requires_grad_(True)
        logits = model(adv)
        if name == "dlr-pgd (adv-lib)":
            flat = logits.movedim(1, -1).reshape(-1, logits.shape[1])
            loss = -difference_of_logits_ratio(flat, y.reshape(-1)).mean()
        else:
            ce = F.cross_entropy(logits, y, reduction="none")
            if name == "segpgd (cospgd)":
                loss = cos.segpgd_scale(logits, y, ce, t, steps)
            else:
                loss = cos.cospgd_scale(logits, y, ce, num_classes=logits.shape[1]).mean()
        (grad,) = torch.autograd.grad(loss, adv)
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
        if name.endswith(")"):  # a public attack
            adv = _public(name, model, xb, yb, norm, eps, steps, start)
        else:
            kind = name.removeprefix("imaseg ")
            settings = AttackSettings(steps=steps, losses=("ce", "dice"), clip_range=CLIP, seed=start)
            adv = create_attack(f"{kind}-{norm}", model, eps=eps, settings=settings)(xb, yb)
        parts.append(_counts(model, adv, yb))
    return np.concatenate(parts), time.perf_counter() - started


def _cell(model, x, y, norm: str, eps: float, steps: int) -> dict:
    public = ["segpgd (cospgd)", "cospgd (cospgd)", "dlr-pgd (adv-lib)"]
    counts, seconds = {}, {}
    for name in [*public, *(f"imaseg {k}" for k in dict.fromkeys(NEW_DEFAULT + OLD_DEFAULT))]:
        counts[name], seconds[name] = _run_attack(name, model, x, y, norm, eps, steps)
    dice = {name: float(mean_global_dice(c.sum(0))) for name, c in counts.items()}
    for label, members in (("imaseg default (new)", NEW_DEFAULT), ("imaseg default (previous)", OLD_DEFAULT)):
        stacked = np.stack([counts[f"imaseg {m}"] for m in members])
        choice = choose_worst(stacked)
        dice[label] = float(mean_global_dice(stacked[choice, np.arange(stacked.shape[1])].sum(0)))
        seconds[label] = sum(seconds[f"imaseg {m}"] for m in members)
    per_slice = {}
    for name in public:  # the per-slice worst over the public attacks, for reference
        per_slice[name] = counts[name]
    stacked = np.stack(list(per_slice.values()))
    dice["public attacks, worst case"] = float(
        mean_global_dice(stacked[choose_worst(stacked), np.arange(stacked.shape[1])].sum(0))
    )
    return {"dice": dice, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "work" / "attack_strength"))
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--std-epochs", type=int, default=40)
    parser.add_argument("--robust-epochs", type=int, default=4)
    args = parser.parse_args()
    setup_logging(0)
    logging.getLogger("imaseg").setLevel(logging.WARNING)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: this benchmark needs the real ACDC data")
    torch.set_num_threads(2)
    out = Path(args.out)
    models = _models(out, args)
    x, y = _slices(out / "cache", args.slices)
    partial = out / "cells.json"
    results = json.loads(partial.read_text()) if partial.is_file() else {}
    for model_name, run in models.items():
        network = load_run(run).network
        for norm, eps in BUDGETS:
            key = f"{model_name} {norm} {eps:.6g}"
            if key not in results:
                results[key] = {
                    "model": model_name,
                    "norm": norm,
                    "eps": eps,
                    **_cell(network, x, y, norm, eps, args.steps),
                }
                atomic_write_json(partial, results)
            _print(key, results[key])
    summary = _targets(results)
    atomic_write_json(
        ROOT / "benchmarks" / "results" / "attack_strength.json",
        {
            "slices": int(x.shape[0]),
            "steps": args.steps,
            "std_epochs": args.std_epochs,
            "robust_epochs": args.robust_epochs,
            "cells": list(results.values()),
            **summary,
        },
    )
    print(json.dumps(summary, indent=1))


def _print(key: str, cell: dict) -> None:
    dice = cell["dice"]
    print(key.ljust(22), "  ".join(f"{k}: {v:.3f}" for k, v in dice.items()))


def _targets(results: dict) -> dict:
    public = ["segpgd (cospgd)", "cospgd (cospgd)", "dlr-pgd (adv-lib)"]
    beaten = [
        key
        for key, cell in results.items()
        if any(cell["dice"]["imaseg default (new)"] > cell["dice"][p] + 1e-9 for p in public)
    ]
    new = sum(c["seconds"]["imaseg default (new)"] for c in results.values())
    old = sum(c["seconds"]["imaseg default (previous)"] for c in results.values())
    previous_beaten = sum(
        any(c["dice"]["imaseg default (previous)"] > c["dice"][p] + 1e-9 for p in public) for c in results.values()
    )
    return {
        "cells_where_a_public_attack_beats_the_new_default": beaten,
        "cells_where_a_public_attack_beats_the_previous_default": previous_beaten,
        "cells": len(results),
        "attack_time_new_over_previous": new / old if old else float("nan"),
    }


if __name__ == "__main__":
    main()
