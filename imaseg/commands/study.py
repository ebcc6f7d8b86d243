"""``imaseg study run|status|report STUDY.yaml``: a declared study's cells, run resumably, its progress and its
report."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imaseg.study.declaration import Study

HELP = (
    "run a declared study (configurations x folds x seeds, resumable, in chunks), show how far it got, or report it"
    " from its records"
)

_RUN = """Run the study's cells that are not done: each is a normal `imaseg train` + `imaseg evaluate` run folder
under the study's `work` folder. A cell whose records entry was made with the same settings is skipped; a
changed setting reruns only the cells (and inside them only the stages) it touches; an interrupted cell
resumes. Every finished cell is appended at once to RESULTS/NAME_records.json (commit it after every chunk)."""

_STATUS = """Per configuration the cells done (in the records with today's settings), stale (in the records with
other settings: the next run reruns them) and left, and the CPU minutes left, estimated from the cells done
(their recorded `cpu_minutes`: process time summed over threads, so on 2 busy cores about twice the wall
time). Reads the declaration and the records only: no torch, no data, no run folder."""

_REPORT = """Pool the records (95% bootstrap intervals over patients, paired differences, the comparison at
matched clean Dice), write NAME.json, NAME.md and NAME.png, and print the tables. Needs no torch, no data and
no run folder: the records file holds every case's counts and patient."""


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _numbers(text: str) -> list[int]:
    try:
        return [int(n) for n in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only",
        type=_names,
        help="comma-separated configuration names (default: all); the configurations they fine-tune are added",
    )
    parser.add_argument("--folds", type=_numbers, help="comma-separated folds instead of the study's, e.g. 0,1")
    parser.add_argument("--seeds", type=_numbers, help="comma-separated seeds instead of the study's")


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run the cells that are not done", description=_RUN)
    run.add_argument("study", help="study declaration (YAML; e.g. benchmarks/studies/frontier_acdc.yaml)")
    _add_selection(run)
    run.add_argument(
        "--max-minutes",
        type=float,
        help="start no cell after this many wall minutes (default: the study's max_minutes); rerun to continue",
    )
    run.add_argument("--work", help="folder of the run folders and cache (default: the study's `work`)")
    run.add_argument(
        "--rebuild-missing",
        action="store_true",
        help="also train again the models of done cells that have no checkpoint in the work folder (a fresh "
        "checkout), for code that attacks the models; their records are kept, and each rebuilt model's clean "
        "predictions are checked against its record. Done cells that a cell to run starts from are always rebuilt",
    )
    status = actions.add_parser("status", help="cells done, stale and left, and the CPU time left", description=_STATUS)
    status.add_argument("study", help="study declaration (YAML)")
    _add_selection(status)
    status.add_argument("--records", help="another records file of this study (default: RESULTS/NAME_records.json)")
    report = actions.add_parser("report", help="tables, intervals and the plot from the records", description=_REPORT)
    report.add_argument("study", help="study declaration (YAML)")
    report.add_argument("--records", help="another records file of this study (default: RESULTS/NAME_records.json)")
    report.add_argument("--out", help="output path without suffix (default: RESULTS/NAME)")


def run(args: argparse.Namespace) -> int:
    from imaseg.study.declaration import load_study

    study = load_study(args.study)
    if args.study_command == "report":
        return _report(study, args)
    if args.study_command == "status":
        return _status(study, args)
    return _run(study, args)


def _report(study: Study, args: argparse.Namespace) -> int:
    from imaseg.study.records import StudyRecords
    from imaseg.study.report import write_report

    records = StudyRecords.load(args.records or study.records_path)
    split = str(study.evaluate.get("split", "test"))  # EvalConfig's default, not imported: reports need no torch
    print(write_report(records, study.report, args.out or study.output_prefix, split=split))
    return 0


def _status(study: Study, args: argparse.Namespace) -> int:
    from imaseg.study.cells import expand_cells
    from imaseg.study.progress import format_progress, study_progress
    from imaseg.study.records import StudyRecords

    records = StudyRecords.load(args.records or study.records_path)
    cells = expand_cells(study, only=args.only, folds=args.folds, seeds=args.seeds)
    print(format_progress(study_progress(study, records, cells)))
    return 0


def _run(study: Study, args: argparse.Namespace) -> int:
    import logging

    from imaseg.study.runner import run_study

    outcome = run_study(
        study,
        only=args.only,
        folds=args.folds,
        seeds=args.seeds,
        max_minutes=args.max_minutes,
        work=args.work,
        rebuild_missing=args.rebuild_missing,
    )
    logger = logging.getLogger("imaseg.study")
    logger.info(
        "%d cells run, %d models of done cells trained again, %d already done; records: %s",
        len(outcome.ran), len(outcome.rebuilt), len(outcome.skipped), study.records_path,
    )  # fmt: skip
    if outcome.stopped_before:
        logger.info("stopped before %s (--max-minutes); rerun the same command to continue", outcome.stopped_before)
    return 0
