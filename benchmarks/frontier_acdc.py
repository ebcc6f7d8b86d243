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
the 11 configurations x 3 folds come to about 5 wall-hours, which is about 10 hours of process CPU time.
Every record states its epochs and its CPU minutes (process time of training and evaluation, both threads).
The first chunk fine-tuned for 6 epochs; those fold-0 cells are kept in ``frontier_acdc_records_6epochs.json``
as the training-length ablation.

Outputs: ``benchmarks/results/frontier_acdc_records.json`` (the finished cells, with their per-case counts:
commit it after every chunk, so the pooled numbers never need the run folders) and
``benchmarks/results/frontier_acdc.json`` (one record per cell: method, setting, fold, seed,
epochs, cpu_minutes, clean, clean_ci, robust {eps: dice}, robust_ci, auc; then per method the pooled
numbers over folds with 95% bootstrap intervals over patients, and paired intervals of IMA minus PGD-AT)
and ``benchmarks/results/frontier_acdc.png`` (clean Dice against Dice at eps 1, one point per method).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

import numpy as np

from imaseg.cache.writer import preprocess_dataset
from imaseg.config import config_from_dict
from imaseg.evaluation.config import EvalConfig
from imaseg.evaluation.evaluate import evaluate
from imaseg.evaluation.summary import case_counts
from imaseg.metrics.bootstrap import bootstrap_auc, bootstrap_dice, paired_bootstrap_difference
from imaseg.metrics.worst import mean_global_dice
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


def _patients(cases) -> dict[str, str]:
    return {c: c.split("_")[0] for c in cases}  # ACDC: patientNNN_frameMM


def pooled(records: list[dict]) -> dict:
    """Per configuration, over its folds: global Dice with 95% intervals over patients, and paired
    differences IMA minus the best PGD-AT at eps 1."""
    by_setting: dict[str, list[dict]] = {}
    for record in records:
        by_setting.setdefault(record["setting"], []).append(record)
    keys = ["clean", *(f"{e:g}" for e in EPS)]
    counts = {
        s: {k: {c: np.asarray(v) for r in rs for c, v in r["counts"][k].items()} for k in keys}
        for s, rs in by_setting.items()
    }
    out: dict = {"methods": {}, "paired": {}}
    for setting, per_key in counts.items():
        entry = {}
        for k, cases in per_key.items():
            patients = _patients(cases)
            total = np.sum(list(cases.values()), axis=0)
            entry[k] = {"dice": float(mean_global_dice(total)), "ci": list(bootstrap_dice(cases, patients))}
        auc, low, high = bootstrap_auc({e: per_key[f"{e:g}"] for e in EPS}, _patients(per_key["clean"]))
        entry["auc"] = {"dice": auc, "ci": [low, high]}  # mean Dice over eps 0.25..2 (summary.json's auc)
        entry["folds"] = sorted(r["fold"] for r in by_setting[setting])
        entry["cpu_minutes"] = sum(r["cpu_minutes"] for r in by_setting[setting])
        out["methods"][setting] = entry
    references = [s for s in counts if s.startswith("pgd-at")]
    for setting in [s for s in counts if s.startswith("ima")]:
        for reference in references:
            for k in ("clean", "1"):
                first, second = counts[setting][k], counts[reference][k]
                if set(first) & set(second):
                    out["paired"][f"{setting} - {reference} @ {k}"] = paired_bootstrap_difference(
                        first, second, _patients(first)
                    )
    out["paired_per_fold"] = _paired_per_fold(by_setting, PER_FOLD_REFERENCE)
    return out


PER_FOLD_REFERENCE = "pgd-at eps 1"  # the best PGD-AT at eps 1 on every fold


def _paired_per_fold(by_setting: dict[str, list[dict]], reference: str) -> dict:
    """Fold by fold, every IMA setting minus ``reference`` (clean and eps 1): does a pooled gain hold on each?"""
    out: dict = {}
    baseline = {r["fold"]: r["counts"] for r in by_setting.get(reference, [])}
    for setting in [s for s in by_setting if s.startswith("ima")]:
        for record in by_setting[setting]:
            if record["fold"] not in baseline:
                continue
            for k in ("clean", "1"):
                first = {c: np.asarray(v) for c, v in record["counts"][k].items()}
                second = {c: np.asarray(v) for c, v in baseline[record["fold"]][k].items()}
                name = f"{setting} - {reference} @ {k} fold {record['fold']}"
                out[name] = paired_bootstrap_difference(first, second, _patients(first))
    return out


# the curves of the plot: the settings joined by a line, in order of their budget
CURVES = {
    "PGD-AT": ["pgd-at eps 0.5", "pgd-at eps 1", "pgd-at eps 1.5"],
    "IMA voxel": ["ima voxel eps_max 1", "ima voxel eps_max 1.5", "ima voxel eps_max 2"],
}
COLOURS = {"std": "black", "pgd-at": "tab:blue", "trades": "tab:orange", "ima": "tab:red"}


def plot(summary: dict, path: Path) -> None:
    """Clean Dice against Dice at eps 1, one point per configuration with its 95% intervals; PGD-AT and IMA
    voxel joined as curves over their budgets, IMA's other settings hollow."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.5, 5.5))
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    points = {s: (e["clean"]["dice"], e["1"]["dice"]) for s, e in summary["methods"].items() if "1" in e}
    folds = sorted({f for e in summary["methods"].values() for f in e["folds"]})
    for curve, settings in CURVES.items():
        xy = [points[s] for s in settings if s in points]
        if len(xy) > 1:
            colour = COLOURS["pgd-at" if curve == "PGD-AT" else "ima"]
            axis.plot(*zip(*xy, strict=True), color=colour, alpha=0.5, linewidth=1.5, zorder=1)
    shapes = iter("XDph*P<>8H")
    for setting, (x, y) in points.items():
        entry = summary["methods"][setting]
        method = CONFIGURATIONS.get(setting, {}).get("method", "std")
        members = next((m for m in CURVES.values() if setting in m), None)
        marker = "vo^"[members.index(setting)] if members else ("s" if "sample" in setting else next(shapes))
        colour = COLOURS.get(method, "grey")
        partial = entry["folds"] != folds  # not yet on every fold: not comparable with the others
        done = entry["folds"]
        name = (
            f"{setting} ({'fold' if len(done) == 1 else 'folds'} {','.join(map(str, done))} only)"
            if partial
            else setting
        )
        axis.errorbar(
            x,
            y,
            xerr=[[x - entry["clean"]["ci"][0]], [entry["clean"]["ci"][1] - x]],
            yerr=[[y - entry["1"]["ci"][0]], [entry["1"]["ci"][1] - y]],
            marker=marker,
            markersize=7,
            color=colour,
            markerfacecolor="white" if method == "ima" and not members else colour,
            ecolor=colour,
            elinewidth=0.7,
            alpha=0.9,
            capsize=2,
            label=name,
            zorder=2,
        )
    axis.set_xlabel("clean global Dice (95% CI over patients)")
    axis.set_ylabel("global Dice under the default attack, L2 eps 1 (95% CI)")
    axis.set_title(f"ACDC accuracy-robustness frontier, test patients of folds {', '.join(map(str, folds))}")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="lines: the budget sweeps")
    figure.savefig(path, dpi=130, bbox_inches="tight")


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
    summary = pooled(list(records.values())) if records else {"methods": {}, "paired": {}}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_json(results / "frontier_acdc.json", {"records": list(records.values()), **summary})
    if summary["methods"]:
        plot(summary, results / "frontier_acdc.png")
    print(json.dumps(summary["methods"], indent=1)[:4000])


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
