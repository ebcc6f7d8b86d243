"""``imaseg export RUN --bundle OUT``: a trained run as a MONAI bundle carrying its robustness card."""

from __future__ import annotations

import argparse

from imaseg.commands.options import add_trust_factory, apply_options
from imaseg.postprocess import POSTPROCESS_HELP, POSTPROCESSORS

HELP = (
    "export a trained run as a MONAI bundle that `python -m monai.bundle run` runs (configs/inference.json, "
    "models/model.pt, docs/README.md, licences) with its robustness card"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder written by `imaseg train` (evaluate it first for the card)")
    parser.add_argument("--bundle", required=True, help="bundle folder to write")
    parser.add_argument("--checkpoint", default="last", help="last, best, or a checkpoint path")
    parser.add_argument("--tag", default="default", help="the evaluation RUN/eval/TAG whose numbers form the card")
    parser.add_argument(
        "--data-license",
        default=None,
        help="the training data's licence, as text or a file, for docs/data_license.txt (default: the licence "
        "their dataset.json declares)",
    )
    parser.add_argument(
        "--postprocess",
        choices=tuple(POSTPROCESSORS),
        default=None,
        help=POSTPROCESS_HELP + ". The bundle adds MONAI's KeepLargestConnectedComponentd to its postprocessing for "
        "lcc. Default: what the card's evaluation (--tag) scored with",
    )
    add_trust_factory(parser)


def run(args: argparse.Namespace) -> int:
    from imaseg.prediction.bundle import export_bundle

    apply_options(args)
    export_bundle(
        args.run,
        args.bundle,
        checkpoint=args.checkpoint,
        tag=args.tag,
        data_license_text=args.data_license,
        postprocess=args.postprocess,
    )
    return 0
