"""Heart MRI (ACDC): preprocess -> train STD, PGD-AT and IMA (TRADES with --methods std,pgd-at,ima,trades) -> attack -> report.

    python pipelines/heart.py [--data ../shared/data/acdc_heart] [--out runs/heart] [--quick]
                              [--methods std,ima,pgd-at] [--eps 0,0.25,0.5,1,2] [--seed 0] [--device cpu]

Multi-class (RV, myocardium, LV) 2D segmentation of short-axis slices, split by patient.
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline_arguments(parser, default_config=str(HERE / "configs" / "heart.yaml"), default_out="runs/heart")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    config = load_pipeline_config(args)
    if not (args.data or config.data.get("path")):
        parser.error(f"{args.config} names no data.path; pass --data DIR (an MSD / nnU-Net / images+labels folder)")
    data = Path(args.data or (HERE.parent / config.data["path"]))
    if not data.is_dir():
        parser.error(f"data folder {data} does not exist; pass --data DIR (an MSD / nnU-Net / images+labels folder)")
    result = run_chain(
        data,
        Path(args.out),
        config,
        StageRunner(args.out, force=args.force),
        title="Heart MRI (ACDC): Dice under attack, standard vs robust training",
    )
    print_summary(result)
    return 0


if __name__ == "__main__":
    from imaseg.cli import run_guarded

    sys.exit(run_guarded("pipelines/heart.py", main))
