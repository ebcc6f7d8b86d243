"""The accuracy-robustness frontier on real ACDC: which robust training method is better, with intervals.

    python benchmarks/frontier_acdc.py [--folds 0,1,2] [--seeds 0] [--methods all] [--max-minutes 170]
    python benchmarks/frontier_acdc.py --report        # tables, intervals and the plot from what is done

Resumable, cell by cell: a cell is (method, setting, fold, seed), a normal ``imaseg train`` + ``imaseg
evaluate`` run folder under ``--out``; finished cells are skipped, an interrupted one resumes, and
``--max-minutes`` stops between cells so the study runs in chunks of a session each.

Protocol (issue 13): ``../shared/data/acdc_heart``, patient-grouped 5 folds (folds 0, 1, 2 by default; 24
train / 6 test patients each, no validation side), 2D slices at ``--size`` (96 x 96), intensities in [0, 1].
One recipe for every method: MONAI UNet ``--channels`` (16, 32, 64, 128) with 1 residual unit and instance
norm, AdamW, batch 16, the same augmentation; STD trains ``--std-epochs`` from scratch per fold, every
robust method fine-tunes that fold's STD checkpoint for ``--robust-epochs`` at a constant learning rate
with 10 inner steps. Evaluation: the default attack (APGD-Dice, APGD-DLR, CosPGD, SegPGD, noise, their
worst case per slice chosen for the lowest global Dice), 20 steps, L2 eps 0.25, 0.5, 1, 2.

CPU plan (2 cores, 2 threads): STD about 3 wall-minutes per fold (60 epochs), a 12-epoch robust fine-tune
5-7 wall-minutes (IMA sample, with 20 inner steps, about twice that), an evaluation about 3.5 wall-minutes;
the 15 configurations (14 on 3 folds, one ablation on fold 0) came to 43 cells, about 7 wall-hours and
13 hours of process CPU time.
Every record states its epochs and its CPU minutes (process time of training and evaluation, both threads).
The first chunk fine-tuned for 6 epochs; those fold-0 cells are kept in ``frontier_acdc_records_6epochs.json``
as the training-length ablation.

Outputs: ``benchmarks/results/frontier_acdc_records.json`` (the finished cells, with their per-case counts:
commit it after every chunk, so the pooled numbers never need the run folders) and
``benchmarks/results/frontier_acdc.json`` (one record per cell: method, setting, fold, seed,
epochs, cpu_minutes, clean, clean_ci, robust {eps: dice}, robust_ci, auc; then per method the pooled
numbers over folds with 95% bootstrap intervals over patients, and paired intervals of IMA minus PGD-AT)
and ``benchmarks/results/frontier_acdc.png`` (clean Dice against Dice at eps 1, one point per method), and
``benchmarks/results/frontier_acdc.md`` (the tables of ``benchmarks/README.md``); pooling, plot and tables
are ``frontier_report.py``, each IMA setting against PGD-AT's frontier at matched clean Dice is
``frontier_matched.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

from frontier_report import write_report  # a sibling module: run as python benchmarks/frontier_acdc.py

from imaseg.cache.writer import preprocess_dataset
from imaseg.config import config_from_dict
from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.evaluate import evaluate
from imaseg.evaluation.summary import case_counts
from imaseg.pipeline import StageRunner
from imaseg.training.config import TrainConfig
from imaseg.training.trainer import train
from imaseg.transforms.chain import PreprocessConfig
from imaseg.utils.atomic import atomic_write_json
from imaseg.utils.logs import setup_logging

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "acdc_heart"
RESULTS = ROOT / "benchmarks" / "results"
EPS = [0.25, 0.5, 1.0, 2.0]

# name -> (method, settings): the configurations of the study (every one fine-tunes the fold's STD)
CONFIGURATIONS: dict[str, dict] = {
    "std": {"method": "std"},
    "pgd-at eps 0.5": {"method": "pgd-at", "eps": 0.5},
    "pgd-at eps 1": {"method": "pgd-at", "eps": 1.0},
    "pgd-at eps 1.5": {"method": "pgd-at", "eps": 1.5},
    "trades eps 1": {"method": "trades", "eps": 1.0},
    "ima sample official": {
        "method": "ima",
        "ima": {"margin": "sample", "steps": 20, "alpha_factor": 4.0, "empty_policy": "fail"},
    },
    "ima voxel eps_max 1": {"method": "ima", "ima": {"margin": "voxel", "eps_max": 1.0}},
    "ima voxel eps_max 1.5": {"method": "ima", "ima": {"margin": "voxel", "eps_max": 1.5}},
    "ima voxel eps_max 2": {"method": "ima", "ima": {"margin": "voxel", "eps_max": 2.0}},
    # ablation (issue 13's levers): margins that grow twice as fast, so they reach eps_max within the fine-tune
    "ima voxel eps_max 2 delta 0.5": {"method": "ima", "ima": {"margin": "voxel", "eps_max": 2.0, "delta": 0.5}},
    # lever: a margin floor at PGD-AT's budget; every slice trains at >= eps 1, the robust ones grow towards 2
    "ima voxel eps_min 1 eps_max 2": {"method": "ima", "ima": {"margin": "voxel", "eps_min": 1.0, "eps_max": 2.0}},
    # ablation of that lever: margins pinned at 1 (no growth), so only voxel mode's attack and loss differ from PGD-AT
    "ima voxel eps_min 1 eps_max 1": {"method": "ima", "ima": {"margin": "voxel", "eps_min": 1.0, "eps_max": 1.0}},
    # the clean/adversarial weighting, both ways: the floor lever pulled towards clean Dice, and PGD-AT pushed
    # towards robustness, so each method's frontier reaches the other's clean Dice and they compare at matched clean
    "ima voxel eps_min 1 eps_max 2 beta 0.3": {
        "method": "ima",
        "ima": {"margin": "voxel", "eps_min": 1.0, "eps_max": 2.0, "beta": 0.3},
    },
    "pgd-at eps 1 adv_weight 0.75": {"method": "pgd-at", "eps": 1.0, "adv_weight": 0.75},
    # a trained point inside the chord that frontier_matched.py interpolates, where the IMA settings land
    "pgd-at eps 1 adv_weight 0.65": {"method": "pgd-at", "eps": 1.0, "adv_weight": 0.65},
}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _slug(name: str) -> str:
    return name.replace(" ", "-").replace(".", "p")


def _cell(args, out: Path, cache: Path, name: str, fold: int, seed: int, stages: StageRunner) -> dict:
    """Train (STD from scratch, others from the fold's STD) and evaluate one cell; returns its record."""
    run = out / f"fold{fold}" / f"seed{seed}" / _slug(name)
    std_run = out / f"fold{fold}" / f"seed{seed}" / "std"
    common = {
        "fold": fold,
        "seed": seed,
        "channels": args.channels,
        "res_units": 1,
        "batch_size": 16,
        "clip_range": [0.0, 1.0],
        "threads": 2,
        "val_steps": 0,
        "tensorboard": False,
        "attack_steps": 10,
        "ima_steps": 10,
    }
    if name == "std":
        settings = {**common, "method": "std", "epochs": args.std_epochs, "lr": 2e-3, "warmup_epochs": 2}
    else:
        settings = {
            **common,
            "epochs": args.robust_epochs,
            "lr": 5e-4,
            "schedule": "constant",
            "warmup_epochs": 0,
            "init": str(std_run / "checkpoints" / "last.pt"),
        }
        overrides = dict(CONFIGURATIONS[name])
        section = overrides.pop("ima", {})
        settings.update(overrides)
        settings.update({f"ima_{k}": v for k, v in section.items()})
    config = config_from_dict(TrainConfig, settings)
    evaluation_settings = {"eps": EPS, "steps": 20, "seed": seed, "overlays": 0, "hd95": False, "device": "cpu"}
    evaluation = EvalConfig(**evaluation_settings)
    key = f"{name} fold{fold} seed{seed}"
    started = _cpu_seconds()
    stages.run(
        f"train {key}",
        {"train": settings},  # the study's explicit settings: options added to imaseg later keep cells done
        lambda resume: train(cache, run, config, resume=resume, overwrite=not resume, progress=False)["epoch"],
        after=[] if name == "std" else [f"train std fold{fold} seed{seed}"],
    )
    summary = stages.run(
        f"evaluate {key}",
        {"evaluate": evaluation_settings},
        lambda _r: _digest(evaluate(run, evaluation, progress=False)),
        after=[f"train {key}"],
    )
    keys = {"clean": "clean", **{f"{e:g}": f"worst-l2__eps{e:g}" for e in EPS}}
    return {
        "method": CONFIGURATIONS[name]["method"],
        "setting": name,
        "fold": fold,
        "seed": seed,
        "epochs": config.epochs,
        "cpu_minutes": (_cpu_seconds() - started) / 60,
        **summary,
        "run": str(run),
        # per case [tp, fp, fn] per class, so pooling needs no run folder (the records file is committed)
        "counts": {k: {c: v.tolist() for c, v in _counts(run, key).items()} for k, key in keys.items()},
    }


def _digest(summary: dict) -> dict:
    worst = summary["attacks"]["worst-l2"]
    return {
        "clean": summary["clean"]["mean_dice"]["global"],
        "clean_ci": summary["clean"].get("ci_global"),
        "robust": {f"{e:g}": c["mean_dice"]["global"] for e, c in zip(worst["eps"], worst["cells"])},
        "robust_ci": {f"{e:g}": c.get("ci_global") for e, c in zip(worst["eps"], worst["cells"])},
        "auc": worst["auc"],
    }


def _counts(run: Path, key: str) -> dict:
    cell = json.loads((run / "eval" / "default" / "cells" / f"{key}.json").read_text())
    return case_counts(cell)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "work" / "frontier"))
    parser.add_argument("--folds", default="0,1,2")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--methods", default="all", help="comma-separated configuration names, or all")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--channels", default="16,32,64,128")
    parser.add_argument("--std-epochs", type=int, default=60)
    parser.add_argument("--robust-epochs", type=int, default=12)
    parser.add_argument("--max-minutes", type=float, default=170.0, help="stop starting cells after this")
    parser.add_argument("--report", action="store_true", help="only pool what is done and plot")
    parser.add_argument("--results", default=str(RESULTS), help="folder of frontier_acdc.json / .png")
    args = parser.parse_args()
    args.channels = [int(c) for c in args.channels.split(",")]
    setup_logging(0)
    logging.getLogger("imaseg").setLevel(logging.WARNING)
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is absent: this benchmark needs the real ACDC data")
    out = Path(args.out)
    stages = StageRunner(out)
    records_path = Path(args.results) / "frontier_acdc_records.json"  # committed after every chunk
    records = json.loads(records_path.read_text()) if records_path.is_file() else {}
    if not args.report:
        _run_cells(args, out, stages, records, records_path)
    print(write_report(list(records.values()), Path(args.results)))


def _run_cells(args, out: Path, stages: StageRunner, records: dict, records_path: Path) -> None:
    cache = out / "cache"
    pre_settings = {
        "intensity": "none",
        "spatial_size": [args.size, args.size],
        "folds": 5,
        "val_groups": 0,
        "group_regex": r"^(patient\d+)",
    }
    pre = PreprocessConfig(**pre_settings)
    stages.run(
        "preprocess",
        {"pre": pre_settings},
        lambda _r: preprocess_dataset(DATA, cache, pre, progress=False)["num_samples"],
    )
    names = list(CONFIGURATIONS) if args.methods == "all" else [m.strip() for m in args.methods.split(",")]
    names = ["std", *[n for n in names if n != "std"]]  # every robust cell starts from its fold's STD
    started = time.perf_counter()
    for seed in [int(s) for s in args.seeds.split(",")]:
        for fold in [int(f) for f in args.folds.split(",")]:
            for name in names:
                key = f"{name} fold{fold} seed{seed}"
                epochs = args.std_epochs if name == "std" else args.robust_epochs
                if key in records and records[key]["epochs"] == epochs:
                    continue  # done with this recipe (another epoch count reruns the cell and replaces it)
                if (time.perf_counter() - started) / 60 > args.max_minutes:
                    print(f"stopping before {key}: --max-minutes reached; rerun to continue")
                    return
                records[key] = _cell(args, out, cache, name, fold, seed, stages)
                atomic_write_json(records_path, records)
                print(key, {k: records[key][k] for k in ("clean", "robust", "cpu_minutes")})


if __name__ == "__main__":
    main()
