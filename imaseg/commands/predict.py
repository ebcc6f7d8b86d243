"""``imaseg predict RUN --input PATH --output DIR``: segment new images with a trained run."""

from __future__ import annotations

import argparse

from imaseg.commands.options import add_memory_budget, add_trust_factory, apply_options
from imaseg.config import config_part
from imaseg.config_flags import HelpFormatter, add_config_arguments
from imaseg.prediction.config import PredictConfig

HELP = (
    "segment new, unlabelled images with a trained run: label maps in each input's own geometry, structure "
    "volumes (mL) as CSV/JSON, optionally a per-voxel robustness map; resumable"
)

EPILOG = """\
The images are preprocessed exactly as the run's training data (RUN/preprocessing.json: orientation,
spacing, intensity scaling, size, 2D slices or 3D volumes); the training cache is not needed.

--input takes a NIfTI file, a folder of NIfTI files, or a data set folder (imagesTs/, else imagesTr/,
else images/); nnU-Net channel files CASE_0000, CASE_0001... form one multi-channel case.

Examples:
  imaseg predict runs/heart-ima --input new_scans/ --output seg/
  imaseg predict runs/heart-ima --input scan.nii.gz --output seg/ --robustness-map 1.0
  imaseg predict runs/heart-ima --input new_scans/ --output seg-lcc/ --postprocess lcc
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = HelpFormatter
    parser.add_argument("run", help="run folder written by `imaseg train`")
    parser.add_argument("--input", required=True, help="NIfTI file, folder of NIfTI files, or data set folder")
    parser.add_argument("--output", required=True, help="folder for CASE.nii.gz, volumes.csv / .json, predict.json")
    parser.add_argument("--config", help="YAML file; its 'predict' section (or the whole file) sets the options")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_trust_factory(parser)
    add_memory_budget(parser)
    add_config_arguments(parser, PredictConfig, title="prediction options")


def run(args: argparse.Namespace) -> int:
    import logging

    from imaseg.config import load_yaml
    from imaseg.config_flags import resolve_config
    from imaseg.prediction.predict import predict

    apply_options(args)
    data = load_yaml(args.config)
    config = resolve_config(
        PredictConfig, config_part(data, "predict", args.config), args, source=str(args.config or "defaults")
    )
    sizes = predict(args.run, args.input, args.output, config, progress=not args.no_progress)
    logging.getLogger("imaseg").info("%d case(s) segmented into %s", len(sizes), args.output)
    return 0
