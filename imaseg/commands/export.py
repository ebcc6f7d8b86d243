"""``imaseg export RUN --bundle OUT``: a trained run as a MONAI bundle carrying its robustness card."""

from __future__ import annotations

import argparse

HELP = "export a trained run as a MONAI bundle (configs/inference.json, models/model.pt) with its robustness card"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder written by `imaseg train` (evaluate it first for the card)")
    parser.add_argument("--bundle", required=True, help="bundle folder to write")
    parser.add_argument("--checkpoint", default="last", help="last, best, or a checkpoint path")
    parser.add_argument("--tag", default="default", help="the evaluation RUN/eval/TAG whose numbers form the card")


def run(args: argparse.Namespace) -> int:
    from imaseg.prediction.bundle import export_bundle

    export_bundle(args.run, args.bundle, checkpoint=args.checkpoint, tag=args.tag)
    return 0
