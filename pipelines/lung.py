"""Lungs: chest X-ray (2D) and/or chest CT (HU windowing, axial slices): preprocess -> train -> attack -> report.

    python pipelines/lung.py [--dataset cxr|ct|both] [--data DIR] [--out runs/lung] [--quick] [--methods std,ima]

``cxr`` uses ../shared/data/cxr_lung (Montgomery + Shenzhen, 512^2 8-bit, lung masks); ``ct`` uses
../shared/data/lung_ct (two CTs in HU; lung label derived, tumour expert) to exercise the CT path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from chain import print_summary, run_chain  # noqa: E402

from imaseg.pipeline import StageRunner, load_pipeline_config, pipeline_arguments  # noqa: E402
from imaseg.utils.logs import setup_logging  # noqa: E402

CONFIGS = {"cxr": "lung_cxr.yaml", "ct": "lung_ct.yaml"}
TITLES = {"cxr": "Chest X-ray lungs: Dice under attack", "ct": "Chest CT lungs (HU window): Dice under attack"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline_arguments(
        parser,
        default_config="",
        default_out="runs/lung",
        config_help=f"configs/{CONFIGS['cxr']} or configs/{CONFIGS['ct']}, by --dataset",
    )
    parser.add_argument(
        "--dataset", choices=("cxr", "ct", "both"), default="cxr", help="which lung data set (default: cxr)"
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    datasets = ["cxr", "ct"] if args.dataset == "both" else [args.dataset]
    if (args.data or args.config) and len(datasets) > 1:
        parser.error("--data and --config name one data set's; pick --dataset cxr or ct with them")
    for name in datasets:
        args.config = args.config or str(HERE / "configs" / CONFIGS[name])
        config = load_pipeline_config(args)
        if not (args.data or config.data.get("path")):
            parser.error(f"{args.config} names no data.path; pass --data DIR (an MSD / nnU-Net / images+labels folder)")
        data = Path(args.data or (HERE.parent / config.data["path"]))
        if not data.is_dir():
            parser.error(f"data folder {data} does not exist; pass --data DIR")
        out = Path(args.out) / name if len(datasets) > 1 else Path(args.out)
        result = run_chain(data, out, config, StageRunner(out, force=args.force), title=TITLES[name])
        print_summary(result)
        args.config = None
    return 0


if __name__ == "__main__":
    from imaseg.cli import run_guarded

    sys.exit(run_guarded("pipelines/lung.py", main))
