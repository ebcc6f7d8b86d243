"""Reports from run folders (files only): Dice-vs-eps curves, tables, margins, overlays; HTML + Markdown."""

from imaseg.report.collect import RunData, collect_run
from imaseg.report.document import Document
from imaseg.report.report import build_report

__all__ = ["Document", "RunData", "build_report", "collect_run"]
