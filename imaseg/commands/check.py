"""``imaseg check DATA_DIR``: load every image/label pair, print a per-case table, exit 1 on problems."""

from __future__ import annotations

import argparse

from imaseg.commands.options import add_memory_budget, add_outside_paths, apply_options

HELP = "check a NIfTI folder: per-case shape, true spacing, orientation, intensities, labels; name every problem"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", help="NIfTI folder (MSD, nnU-Net v2, or imagesTr/+labelsTr/ or images/+labels/)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    add_outside_paths(parser)
    add_memory_budget(parser)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from imaseg.data.check import check_dataset, format_report
    from imaseg.utils.atomic import atomic_write_json

    apply_options(args)
    report = check_dataset(args.data, progress=True, allow_outside_paths=args.allow_outside_paths)
    print(format_report(report))
    if args.json:
        atomic_write_json(
            args.json,
            {
                "root": report.root,
                "ok": report.ok,
                "problems": report.all_problems(),
                "cases": [dataclasses.asdict(c) for c in report.cases],
            },
        )
    return 0 if report.ok else 1
