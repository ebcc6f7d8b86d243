"""A study's report from its records file alone: ``NAME.json`` (the records and the pooled figures), the
Markdown tables ``NAME.md`` and the plot ``NAME.png``. No torch here: reports render anywhere.

    imaseg study report STUDY.yaml      # -> RESULTS/NAME.json, RESULTS/NAME.md, RESULTS/NAME.png
"""

from __future__ import annotations

import json
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
    ``PREFIX.md``; returns the Markdown tables (or a line saying no cell has finished, and writes nothing: an
    earlier report there stays as it was).
    ``split`` names the cases the cells were scored on (the study's ``evaluate.split``) in the plot's title.

    Raises:
        FileExistsError: ``PREFIX.json`` exists and is not a study report (another tool's results), or is absent
            beside a ``PREFIX.md`` or ``PREFIX.png`` (a report writes its JSON first): they are kept.
    """
    prefix = Path(prefix)
    target = prefix.with_name(prefix.name + ".json")
    _refuse_foreign(target, [prefix.with_name(prefix.name + suffix) for suffix in (".md", ".png")])
    cells = records.records()
    summary = pooled(cells, records.patients, settings)
    if not summary["methods"]:
        return f"no finished cells yet; nothing written to {prefix}.*"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target, {"records": cells, **summary})
    plot(summary, settings, prefix.with_name(prefix.name + ".png"), split=split)
    tables = markdown(summary, settings, cells)
    atomic_write_text(prefix.with_name(prefix.name + ".md"), tables)
    return tables


def _refuse_foreign(path: Path, companions: list[Path]) -> None:
    """Refuse to replace a JSON file that no study report wrote (its top level has no ``records`` list), or
    ``companions`` (the Markdown and the plot) without their report's JSON beside them."""
    if not path.is_file():
        others = [p for p in companions if p.exists()]
        if others:
            raise FileExistsError(
                f"{others[0]} exists without {path.name} beside it, so no study report wrote it; it is kept: write "
                "this report elsewhere (imaseg study report STUDY.yaml --out PREFIX) or delete it"
            )
        return
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise FileExistsError(
            f"{path}: cannot read it ({error}); it is kept: fix its permissions or pass --out"
        ) from error
    except json.JSONDecodeError:
        value = None
    if not (isinstance(value, dict) and isinstance(value.get("records"), list)):
        raise FileExistsError(
            f"{path} exists and is not a study report (not written by imaseg study report); it is kept: write this "
            "report elsewhere (imaseg study report STUDY.yaml --out PREFIX)"
        )
