"""Studies: a declared list of cells (method, settings, data, fold, seed) in YAML, run resumably through the
normal train / evaluate path and reported from a committed records file.

=====================  ==========================================================================
declaration            ``load_study(path)`` -> :class:`Study` (frozen), its ``configurations``
cells                  ``expand_cells(study)``: configuration x folds x seeds, sources first
runner                 ``imaseg.study.runner.run_study`` (imports torch: train and evaluate)
records                :class:`StudyRecords`: finished cells, their per-case counts, case -> patient
progress               ``study_progress(study, records, cells)``: cells done / stale / left, CPU time left
report                 ``write_report(records, study.report, prefix)``: tables, intervals, plot
=====================  ==========================================================================

The command line is ``imaseg study run|status|report STUDY.yaml``. Only the runner imports torch, so reports render
anywhere from the records file.
"""

from __future__ import annotations

from imaseg.study.cells import StudyCell, expand_cells
from imaseg.study.declaration import Configuration, Study, load_study
from imaseg.study.records import StudyRecords
from imaseg.study.report import write_report

__all__ = ["Configuration", "Study", "StudyCell", "StudyRecords", "expand_cells", "load_study", "write_report"]
