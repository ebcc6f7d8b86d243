"""``imaseg demo-data OUT``: write the embedded synthetic heart MRI set (MSD layout)."""

from __future__ import annotations

import argparse

HELP = "write the embedded synthetic heart MRI data set (MSD layout, ACDC labels) to OUT"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (created)")
    parser.add_argument("--patients", type=int, default=10, help="patients, two phases each (default: 10)")
    parser.add_argument("--size", type=int, nargs=3, default=(96, 96, 8), metavar=("X", "Y", "Z"), help="volume shape")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def run(args: argparse.Namespace) -> int:
    import logging

    from imaseg.data.demo import write_demo_data

    out = write_demo_data(args.out, patients=args.patients, shape=tuple(args.size), seed=args.seed)
    logging.getLogger("imaseg").info("wrote %d synthetic cases to %s", 2 * args.patients, out)
    return 0
