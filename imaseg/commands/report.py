"""``imaseg report RUN [RUN ...]``: HTML + Markdown robustness report comparing runs."""

from __future__ import annotations

import argparse

HELP = "write an HTML report (plots embedded) and a Markdown twin comparing evaluated runs"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run folders (evaluated with `imaseg evaluate`)")
    parser.add_argument(
        "--out", help="output path without suffix (default: RUN/report, or PARENT/report for several runs)"
    )
    parser.add_argument("--tag", default="default", help="evaluation tag to report (RUN/eval/TAG)")
    parser.add_argument("--title", help="report title")


def run(args: argparse.Namespace) -> int:
    import logging

    from imaseg.report.report import build_report

    html_path, md_path = build_report(args.runs, args.out, tag=args.tag, title=args.title)
    logging.getLogger("imaseg").info("report: %s (Markdown: %s)", html_path, md_path)
    return 0
