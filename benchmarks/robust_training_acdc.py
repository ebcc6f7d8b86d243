"""Robust training on the real ACDC heart set: STD, PGD-AT, IMA (sample), IMA (voxel), same CPU budget.

    python benchmarks/robust_training_acdc.py [--std-minutes 20] [--robust-minutes 12] [--seed 0]
                                              [--out benchmarks/work/acdc] [--methods std,pgd-at-0.5,...]

Protocol (the issue's): ../shared/data/acdc_heart, 2D slices at 128 x 128, intensities as the source
gives them ([0, 1], attacks clipped to it), split by patient (fold 0 of 5: 24 patients train, 6 test).
STD trains from scratch for ``--std-minutes``; every robust method fine-tunes the STD checkpoint for
``--robust-minutes`` of wall time at the same constant learning rate, batch, augmentation and precision
(the same CPU budget each). Evaluation: 20-step L2 PGD, per-slice worst of CE and soft-Dice losses, at
eps 0.125, 0.25, 0.5, 1, 2 (L2 over the whole slice), plus same-norm Gaussian noise.

Writes ``benchmarks/results/robust_training_acdc_seed{S}.json`` (clean Dice: global voxel per class and
mean over RV/MYO/LV, per volume; robust Dice per eps; seconds per epoch) and prints a table. Runs
resume: a finished stage is skipped on rerun. Run it alone: it is CPU-bound for about two hours.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from imaseg.cache.writer import preprocess_dataset
from imaseg.config import config_from_dict
from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.evaluate import evaluate
from imaseg.pipeline import StageRunner
from imaseg.training.config import TrainConfig
from imaseg.training.trainer import train
from imaseg.transforms.chain import PreprocessConfig
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "acdc_heart"
EPS = [0.0, 0.125, 0.25, 0.5, 1.0, 2.0]

ROBUST = {
    "pgd-at-0.5": {"method": "pgd-at", "eps": 0.5, "adv_weight": 0.5},
    "pgd-at-1": {"method": "pgd-at", "eps": 1.0, "adv_weight": 0.5},
    "ima-sample": {"method": "ima", "ima_margin": "sample"},
    "ima-voxel": {"method": "ima", "ima_margin": "voxel"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--std-minutes", type=float, default=20.0)
    parser.add_argument("--std-epochs", type=int, default=100, help="schedule length of STD (stopped by the budget)")
    parser.add_argument("--robust-minutes", type=float, default=12.0)
    parser.add_argument("--inner-steps", type=int, default=10, help="inner PGD steps of PGD-AT and IMA")
    parser.add_argument("--ima-delta", type=float, default=0.25)
    parser.add_argument("--ima-eps-max", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="std," + ",".join(ROBUST), help="subset to run")
    parser.add_argument("--eval-steps", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "work" / "acdc"))
    args = parser.parse_args()
    setup_logging(0)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: this benchmark needs the real ACDC data")
    out = Path(args.out) / f"seed{args.seed}"
    stages = StageRunner(out)
    cache = out / "cache"
    pre = PreprocessConfig(
        intensity="none",
        spatial_size=[128, 128],
        resize="pad-resize",
        folds=5,
        val_groups=0,
        group_regex=r"^(patient\d+)",
        seed=0,
    )
    stages.run(
        "preprocess",
        {"cache": str(cache)},
        lambda _r: preprocess_dataset(DATA, cache, pre, progress=False)["num_samples"],
    )
    common = {
        "channels": [16, 32, 64, 128, 256],
        "res_units": 2,
        "batch_size": 16,
        "clip_range": [0.0, 1.0],
        "threads": 2,
        "seed": args.seed,
        "val_steps": 0,
        "tensorboard": False,
    }
    methods = args.methods.split(",")
    runs = {}
    if "std" in methods or any(m in ROBUST for m in methods):
        std = TrainConfig(
            **common,
            method="std",
            epochs=args.std_epochs,
            lr=2e-3,
            schedule="cosine",
            warmup_epochs=2,
            time_budget=args.std_minutes,
        )
        stages.run(
            "train-std",
            {"std": vars(std)},
            lambda resume: train(cache, out / "std", std, resume=resume, overwrite=not resume, progress=False)["epoch"],
        )
        runs["std"] = out / "std"
    for name in methods:
        if name not in ROBUST:
            continue
        settings = {
            **common,
            **ROBUST[name],
            "epochs": 1000,
            "lr": 5e-4,
            "schedule": "constant",
            "warmup_epochs": 0,
            "attack_steps": args.inner_steps,
            "ima_steps": args.inner_steps,
            "ima_delta": args.ima_delta,
            "ima_eps_max": args.ima_eps_max,
            "time_budget": args.robust_minutes,
            "init": str(out / "std" / "checkpoints" / "last.pt"),
        }
        config = config_from_dict(TrainConfig, settings)
        stages.run(
            f"train-{name}",
            {name: vars(config)},
            lambda resume, c=config, n=name: train(
                cache, out / n, c, resume=resume, overwrite=not resume, progress=False
            )["epoch"],
        )
        runs[name] = out / name
    evaluation = EvalConfig(
        attacks=["pgd-l2", "noise-l2"],
        eps=EPS,
        steps=args.eval_steps,
        losses=["ce", "dice"],
        seed=args.seed,
        overlays=0,
        hd95=False,
        steps_check=False,
        tag="benchmark",
    )
    results = {}
    for name, run in runs.items():
        summary = stages.run(
            f"evaluate-{name}",
            {"run": str(run), "eval": vars(evaluation)},
            lambda _r, r=run: _digest(evaluate(r, evaluation, progress=False), r),
            after=[f"train-{name}"],
        )
        results[name] = summary
    report = {
        "protocol": __doc__.split("\n\n")[2],
        "seed": args.seed,
        "settings": vars(args),
        "results": results,
        "finished": time.strftime("%Y-%m-%d %H:%M"),
    }
    path = ROOT / "benchmarks" / "results" / f"robust_training_acdc_seed{args.seed}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    _print_table(results)
    logging.getLogger("imaseg").info("wrote %s", path)


def _digest(summary: dict, run: Path) -> dict:
    import csv

    with open(run / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    seconds = [float(r["seconds"]) for r in rows]
    pgd = summary["attacks"]["pgd-l2"]
    noise = summary["attacks"]["noise-l2"]
    return {
        "clean_global_per_class": summary["clean"]["dice"]["global"],
        "clean_global_mean": summary["clean"]["mean_dice"]["global"],
        "clean_per_volume_mean": summary["clean"]["mean_dice"]["case"],
        "clean_per_slice_mean": summary["clean"]["mean_dice"]["slice"],
        "robust_global_mean": {f"{e:g}": c["mean_dice"]["global"] for e, c in zip(pgd["eps"], pgd["cells"])},
        "robust_global_per_class": {f"{e:g}": c["dice"]["global"] for e, c in zip(pgd["eps"], pgd["cells"])},
        "noise_global_mean": {f"{e:g}": c["mean_dice"]["global"] for e, c in zip(noise["eps"], noise["cells"])},
        "epochs": len(rows),
        "seconds_per_epoch": sum(seconds[1:]) / max(len(seconds) - 1, 1) if len(seconds) > 1 else seconds[0],
        "train_minutes": sum(seconds) / 60,
        "margins": _margins(run),
    }


def _margins(run: Path) -> dict | None:
    path = run / "margins.json"
    if not path.is_file():
        return None
    last = json.loads(path.read_text())["epochs"][-1]
    return {k: last[k] for k in ("epoch", "margin_mean", "margin_median", "margin_at_max") if k in last}


def _print_table(results: dict) -> None:
    print(f"{'model':<12}{'clean':>8}{'vol':>7}" + "".join(f"{e:>8g}" for e in EPS[1:]) + f"{'s/epoch':>9}")
    for name, r in results.items():
        robust = "".join(f"{r['robust_global_mean'][f'{e:g}']:>8.3f}" for e in EPS[1:])
        print(
            f"{name:<12}{r['clean_global_mean']:>8.3f}{r['clean_per_volume_mean']:>7.3f}{robust}{r['seconds_per_epoch']:>9.1f}"
        )


if __name__ == "__main__":
    main()
