"""``imaseg preprocess --data DIR --out DIR``: NIfTI folder -> cache of model inputs + manifest."""

from __future__ import annotations

import argparse

from imaseg.commands.options import add_memory_budget, add_outside_paths, apply_options
from imaseg.config import config_part
from imaseg.config_flags import add_config_arguments
from imaseg.transforms.chain import PreprocessConfig

HELP = "preprocess a NIfTI folder (orientation, spacing, intensity, size, 2D slicing) into a cache with a split"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="NIfTI folder to read")
    parser.add_argument("--out", required=True, help="cache folder to write (reused when inputs are unchanged)")
    parser.add_argument("--config", help="YAML file; its 'preprocess' section (or the whole file) sets the options")
    add_outside_paths(parser)
    add_memory_budget(parser)
    add_config_arguments(parser, PreprocessConfig, title="preprocessing options")


def run(args: argparse.Namespace) -> int:
    import logging

    from imaseg.cache.writer import preprocess_dataset
    from imaseg.config import load_yaml
    from imaseg.config_flags import resolve_config

    apply_options(args)
    data = load_yaml(args.config)
    config = resolve_config(
        PreprocessConfig, config_part(data, "preprocess", args.config), args, source=str(args.config or "defaults")
    )
    manifest = preprocess_dataset(args.data, args.out, config, allow_outside_paths=args.allow_outside_paths)
    split = manifest.split(0)
    logging.getLogger("imaseg").info(
        "%s: %d cases, %d samples, %d classes; fold 0: %d train / %d val / %d test cases",
        args.out,
        len(manifest.cases),
        manifest.num_samples,
        manifest.num_classes,
        len(split.train),
        len(split.val),
        len(split.test),
    )
    return 0
