"""Flags several subcommands share: what to trust, how much memory one image may take, links out of the data.

Each ``add_*`` adds one flag to a subcommand's parser; :func:`apply_options` puts whichever were given into
effect for the process before the command runs.
"""

from __future__ import annotations

import argparse

__all__ = [
    "OUTSIDE_PATHS_HELP",
    "add_memory_budget",
    "add_outside_paths",
    "add_trust_bundle_code",
    "add_trust_factory",
    "apply_options",
]

OUTSIDE_PATHS_HELP = (
    "accept files that resolve outside the data folder: dataset.json entries (../.. or absolute paths) and "
    "symbolic links (of files or of imagesTr/ itself), in every layout; refused by default, since they would pull "
    "any readable file into the outputs"
)


def add_outside_paths(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-outside-paths", action="store_true", help=OUTSIDE_PATHS_HELP)


def add_memory_budget(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-budget",
        type=float,
        metavar="GIB",
        help="the most memory one image may take to decode, in GiB (default: half the memory available); a larger "
        "image is refused, naming its size, before any of it is read",
    )


def add_trust_factory(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-factory",
        action="append",
        metavar="PKG.MODULE:FACTORY",
        help="import and run this network factory when the run's config.yaml names it (repeatable). A run folder "
        "is data: imaseg runs no code it names unless you name it here; only for runs and packages you trust",
    )


def add_trust_bundle_code(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--trust-bundle-code",
        action="store_true",
        help="RUN THE BUNDLE'S CODE: parse its configs/inference.json with MONAI's ConfigParser, which evaluates "
        "its $ expressions and instantiates any _target_ (Python that may do anything). Only for bundles you "
        "trust; without it network_def is built as data, from MONAI's segmentation networks only",
    )


def apply_options(args: argparse.Namespace) -> None:
    """Put the shared flags present in ``args`` into effect for this process."""
    if getattr(args, "memory_budget", None) is not None:
        from imaseg.utils.memory import set_memory_budget

        set_memory_budget(args.memory_budget)
    if getattr(args, "trust_factory", None):
        from imaseg.networks import trust_network_factory

        trust_network_factory(*args.trust_factory)
