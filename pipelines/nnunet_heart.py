"""Heart MRI (ACDC) through nnU-Net v2: raw dataset -> plan + preprocess -> STD and robust training inside nnU-Net
(imaseg's trainers) -> Dice under attack with and without mirroring TTA -> table and report.

    pip install "imaseg[nnunet]" && pip install --no-deps nnunetv2==2.8.1 dynamic-network-architectures==0.4.4
    python pipelines/nnunet_heart.py [--config pipelines/configs/nnunet/heart.yaml] [--out runs/nnunet_heart]
                                     [--data ../shared/data/acdc_heart] [--quick] [--force]

``configs/nnunet/heart.yaml`` is a reduced schedule for a CPU (about an hour per robust model on 2 cores): a
configuration ``2d_cpu`` added to nnU-Net's plans (in-plane spacing 2 mm, 128 x 128 patches, a 5-stage network up
to 128 features) and 40 epochs of 50 iterations. ``configs/nnunet/heart_gpu.yaml`` is nnU-Net's own ``2d``
configuration at its full schedule (1000 x 250). The split is the IMA study's fold 0 (by patient): 20 training
patients, 4 validation patients (nnU-Net's fold 0 validation, written to ``splits_final.json``) and 6 test
patients held out as ``imagesTs``, never seen by training. Every stage is resumable (``OUT/stages.json``).

Writes ``OUT/nnunet_heart.md`` (global Dice with 95% intervals over test patients per model, TTA and budget, and
the agreement of imaseg's clean masks with nnU-Net's own predictor), ``OUT/report.html`` and the nnU-Net folders
``OUT/nnunet_{raw,preprocessed,results}``.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from nnunet_config import config_error  # noqa: E402
from nnunet_scores import (  # noqa: E402
    score_fingerprint,
    score_model,
    summary_table,
    write_report,
)

from imaseg.config import load_yaml  # noqa: E402
from imaseg.pipeline import StageRunner  # noqa: E402
from imaseg.utils.atomic import atomic_write_text  # noqa: E402
from imaseg.utils.logs import setup_logging  # noqa: E402

logger = logging.getLogger("nnunet_heart")

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}


def _patient(case: str) -> str:
    match = re.match(r"(patient\d+)", case)
    if match is None:
        raise ValueError(f"{case}: not an ACDC case name (patientNNN_frameNN)")
    return match.group(1)


def write_raw(data: Path, raw: Path, dataset: str, split: dict[str, list[str]]) -> dict[str, list[str]]:
    """nnU-Net's raw layout (links to the source files): training and validation patients in imagesTr, test
    patients in imagesTs; returns the cases of each part."""
    root = raw / dataset
    cases = sorted(p.name[: -len(".nii.gz")] for p in (data / "labelsTr").glob("*.nii.gz"))
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for case in cases:
        part = "test" if _patient(case) in split["test"] else "val" if _patient(case) in split["val"] else "train"
        parts[part].append(case)
        suffix = "Ts" if part == "test" else "Tr"
        for folder, source, name in (
            (f"images{suffix}", data / "imagesTr" / f"{case}.nii.gz", f"{case}_0000.nii.gz"),
            (f"labels{suffix}", data / "labelsTr" / f"{case}.nii.gz", f"{case}.nii.gz"),
        ):
            (root / folder).mkdir(parents=True, exist_ok=True)
            link = root / folder / name
            if link.is_symlink() or link.exists():  # a link left by an earlier run (perhaps to other data)
                link.unlink()
            link.symlink_to(source.resolve())
    if not parts["test"] or not parts["train"]:
        raise ValueError(
            f"{data}: the split leaves no {'test' if not parts['test'] else 'training'} case; check split.test"
        )
    meta = {
        "channel_names": {"0": "cineMRI"},
        "labels": LABELS,
        "numTraining": len(parts["train"]) + len(parts["val"]),
        "file_ending": ".nii.gz",
    }
    atomic_write_text(root / "dataset.json", json.dumps(meta, indent=1))
    return parts


def held_out_folder(raw_dataset: Path, out: Path) -> Path:
    """The test cases as a labelled folder imaseg scores (nnU-Net layout: imagesTr + labelsTr + dataset.json)."""
    for source, target in (("imagesTs", "imagesTr"), ("labelsTs", "labelsTr")):
        (out / target).mkdir(parents=True, exist_ok=True)
        for file in sorted((raw_dataset / source).iterdir()):
            link = out / target / file.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(file.resolve())
    meta = json.loads((raw_dataset / "dataset.json").read_text())
    meta["numTraining"] = len(list((out / "labelsTr").iterdir()))
    atomic_write_text(out / "dataset.json", json.dumps(meta, indent=1))
    return out


def add_cpu_configuration(plans_file: Path, name: str, settings: dict[str, Any]) -> None:
    """Add configuration ``name`` to the plans: nnU-Net's ``2d`` at a coarser in-plane spacing, smaller patches
    and batches, and a shallower, narrower network (its own data identifier, so it is preprocessed anew)."""
    plans = json.loads(plans_file.read_text())
    config = copy.deepcopy(plans["configurations"]["2d"])
    stages, widest = int(settings["stages"]), int(settings["features_max"])
    config.update(
        data_identifier=f"{plans['plans_name']}_{name}",
        spacing=[float(settings["spacing_xy"])] * 2,
        patch_size=list(settings["patch_size"]),
        batch_size=int(settings["batch_size"]),
    )
    arch = config["architecture"]["arch_kwargs"]
    arch.update(
        n_stages=stages,
        features_per_stage=[min(widest, int(settings["features_min"]) * 2**i) for i in range(stages)],
        kernel_sizes=[[3, 3]] * stages,
        strides=[[1, 1]] + [[2, 2]] * (stages - 1),
        n_conv_per_stage=[2] * stages,
        n_conv_per_stage_decoder=[2] * (stages - 1),
    )
    plans["configurations"][name] = config
    atomic_write_text(plans_file, json.dumps(plans, indent=1))


def plan_and_preprocess(dataset_id: int, configuration: str, cpu: dict[str, Any] | None, processes: int) -> None:
    """nnU-Net's fingerprint and plans, the CPU configuration where asked, and the configuration's preprocessing."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    extract_fingerprints([dataset_id], num_processes=processes, check_dataset_integrity=True, clean=True, verbose=False)
    plans_name = plan_experiments([dataset_id])
    if cpu is not None:
        plans_file = Path(str(nnUNet_preprocessed)) / convert_id_to_dataset_name(dataset_id) / f"{plans_name}.json"
        add_cpu_configuration(plans_file, configuration, cpu)
    preprocess([dataset_id], plans_name, configurations=(configuration,), num_processes=(processes,), verbose=False)


def write_split(preprocessed_dataset: Path, parts: dict[str, list[str]]) -> None:
    """nnU-Net's fold 0 = our training and validation patients (nnU-Net would split by case, not by patient)."""
    atomic_write_text(
        preprocessed_dataset / "splits_final.json",
        json.dumps([{"train": parts["train"], "val": parts["val"]}], indent=1),
    )


def _trainer_name(method: str, settings: Any) -> str:
    """``nnUNetTrainerImaseg_pgdat_1a2b3c``: the method and a digest of its settings (another setting, another folder)."""
    from imaseg.config import to_dict

    digest = hashlib.sha256(json.dumps(to_dict(settings), sort_keys=True).encode()).hexdigest()[:6]
    return f"nnUNetTrainerImaseg_{method.replace('-', '')}_{digest}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(HERE / "configs" / "nnunet" / "heart.yaml"), help="pipeline YAML")
    parser.add_argument("--out", default="runs/nnunet_heart", help="output folder (resumable)")
    parser.add_argument("--data", help="ACDC in MSD layout (default: the config's data.path)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 epoch of 2 iterations, 2 steps")
    parser.add_argument("--force", action="store_true", help="rerun every stage")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    config = load_yaml(args.config)
    if (problem := config_error(config)) is not None:
        parser.error(f"{args.config}: {problem}")
    if config["evaluate"].get("tta_eps") is not None and True not in config["evaluate"]["tta"]:
        logger.warning(
            "%s: evaluate.tta_eps is set but evaluate.tta has no true: no model is scored with TTA", args.config
        )
    if args.quick:
        config.update(epochs=1, iterations=2, val_iterations=1)
        quick = {"steps": 2, "eps": config["evaluate"]["eps"][:2], "tta": [False], "attacks": ["apgd-dice-l2"]}
        config["evaluate"] = {**{k: v for k, v in config["evaluate"].items() if k != "tta_eps"}, **quick}
    default = (config.get("data") or {}).get("path")
    if not (args.data or default):
        parser.error(f"{args.config} names no data.path; pass --data DIR (ACDC in MSD layout)")
    data = Path(args.data or (HERE.parent / default))
    if not (data / "labelsTr").is_dir():
        parser.error(f"{data}: no labelsTr folder; pass --data DIR (ACDC in MSD layout, ../shared/data/acdc_heart)")
    from imaseg.nnunet.requirement import require_nnunet

    require_nnunet()
    return run_pipeline(config, data, Path(args.out), StageRunner(args.out, force=args.force))


def run_pipeline(config: dict[str, Any], data: Path, out: Path, stages: StageRunner) -> int:
    from imaseg.nnunet.robust_steps import RobustSettings
    from imaseg.nnunet.training import nnunet_paths, train_nnunet

    raw, preprocessed, results = ((out / f"nnunet_{n}").resolve() for n in ("raw", "preprocessed", "results"))
    dataset = f"Dataset{int(config['dataset_id']):03d}_ACDCImaseg"
    configuration = config["configuration"]
    os.environ["nnUNet_n_proc_DA"] = "1"  # planning sets torch's threads to it: 0 would crash
    with nnunet_paths(preprocessed, results, raw):
        parts = stages.run(
            "raw", [config["split"], str(data.resolve())], lambda _: write_raw(data, raw, dataset, config["split"])
        )
        stages.run(
            "plan",
            [config.get("cpu_configuration"), configuration],
            lambda _: plan_and_preprocess(int(config["dataset_id"]), configuration, config.get("cpu_configuration"), 2),
            after=["raw"],
        )
        write_split(preprocessed / dataset, parts)
        test = held_out_folder(raw / dataset, out / "test")
        schedule = {k: config[k] for k in ("epochs", "iterations", "val_iterations")}
        os.environ["nnUNet_n_proc_DA"] = str(config.get("augmentation_processes", 0))
        folders: dict[str, Path] = {}
        for name, values in config["methods"].items():
            settings = RobustSettings.from_mapping(values)
            folders[name] = Path(
                stages.run(
                    f"train-{name}",
                    [values, schedule],
                    lambda resume, s=settings, n=name: str(
                        train_nnunet(
                            dataset,
                            configuration,
                            0,
                            s,
                            preprocessed=preprocessed,
                            results=results,
                            trainer_name=_trainer_name(n, s),
                            resume=resume,
                            **schedule,
                        )
                    ),  # fmt: skip
                    after=["plan"],
                )
            )
    evaluation = config["evaluate"]
    rows = []
    for name, folder in folders.items():
        for tta in evaluation["tta"]:
            tag = f"{name}-{'tta' if tta else 'notta'}"
            result = stages.run(
                f"score-{tag}",
                score_fingerprint(evaluation, tta),
                lambda _, f=folder, t=tta, g=tag: score_model(f, test, out / "runs" / g, t, evaluation),
                after=[f"train-{name}"],
            )
            rows.append({"model": name, "tta": "yes" if tta else "no", **result})
    table = summary_table({"eps": evaluation["eps"], "rows": rows})
    atomic_write_text(out / "nnunet_heart.md", table)
    write_report(out, [out / "runs" / f"{r['model']}-{'tta' if r['tta'] == 'yes' else 'notta'}" for r in rows])
    print(table)
    return 0


if __name__ == "__main__":
    from imaseg.cli import run_guarded

    sys.exit(run_guarded("pipelines/nnunet_heart.py", main))
