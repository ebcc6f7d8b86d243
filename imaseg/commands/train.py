"""``imaseg train --cache CACHE --out RUN``: standard, adversarial or IMA training on a preprocessed cache."""

from __future__ import annotations

import argparse

from imaseg.config import config_part
from imaseg.config_flags import add_config_arguments
from imaseg.training.config import MethodChoices, TrainConfig

HELP = f"train a segmenter ({', '.join(MethodChoices())}) on a preprocessed cache; resumable, DDP under torchrun"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", required=True, help="cache folder written by `imaseg preprocess`")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, logs, resolved config)")
    parser.add_argument("--config", help="YAML file; its 'train' section (or the whole file) sets the options")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt if present")
    parser.add_argument("--overwrite", action="store_true", help="start over if OUT already holds a trained run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_arguments(parser, TrainConfig, title="training options")


def run(args: argparse.Namespace) -> int:
    from imaseg.config import load_yaml
    from imaseg.config_flags import resolve_config
    from imaseg.training.trainer import train

    data = load_yaml(args.config)
    config = resolve_config(
        TrainConfig, config_part(data, "train", args.config), args, source=str(args.config or "defaults")
    )
    train(args.cache, args.out, config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    return 0
