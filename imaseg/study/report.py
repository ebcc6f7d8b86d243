"""A study's report from its records file alone: ``NAME.json`` (the records and the pooled figures), the
Markdown tables ``NAME.md`` and the plot ``NAME.png``. No torch here: reports render anywhere.

    imaseg study report STUDY.yaml      # -> RESULTS/NAME.json, RESULTS/NAME.md, RESULTS/NAME.png
"""

from __future__ import annotations

import os
from pathlib import Path

from imaseg.study.plot import plot
from imaseg.study.pooling import pooled
from imaseg.study.records import StudyRecords
from imaseg.study.report_config import ReportSettings
from imaseg.study.tables import markdown
from imaseg.utils.atomic import atomic_write_json, atomic_write_text

__all__ = ["write_report"]


def write_report(
    records: StudyRecords, settings: ReportSettings, prefix: str | os.PathLike[str], *, split: str = "test"
) -> str:
    """Pool ``records`` and write ``PREFIX.json`` (the records, then the pooled figures), ``PREFIX.png`` and
    ``PREFIX.md``; returns the Markdown tables (or a line saying no cell has finished). ``split`` names the
    cases the cells were scored on (the study's ``evaluate.split``) in the plot's title."""
    prefix = Path(prefix)
    cells = records.records()
    summary = pooled(cells, records.patients, settings)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(prefix.with_name(prefix.name + ".json"), {"records": cells, **summary})
    if not summary["methods"]:
        return "no finished cells yet"
    plot(summary, settings, prefix.with_name(prefix.name + ".png"), split=split)
    tables = markdown(summary, settings, cells)
    atomic_write_text(prefix.with_name(prefix.name + ".md"), tables)
    return tables
