"""``imaseg study run|report STUDY.yaml``: a declared study's cells, run resumably, and its report."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imaseg.study.declaration import Study

HELP = "run a declared study (configurations x folds x seeds, resumable, in chunks) or report it from its records"

_RUN = """Run the study's cells that are not done: each is a normal `imaseg train` + `imaseg evaluate` run folder
under the study's `work` folder. A cell whose records entry was made with the same settings is skipped; a
changed setting reruns only the cells (and inside them only the stages) it touches; an interrupted cell
resumes. Every finished cell is appended at once to RESULTS/NAME_records.json (commit it after every chunk)."""

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


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run the cells that are not done", description=_RUN)
    run.add_argument("study", help="study declaration (YAML; e.g. benchmarks/studies/frontier_acdc.yaml)")
    run.add_argument(
        "--only",
        type=_names,
        help="comma-separated configuration names (default: all); the configurations they fine-tune are added",
    )
    run.add_argument("--folds", type=_numbers, help="comma-separated folds instead of the study's, e.g. 0,1")
    run.add_argument("--seeds", type=_numbers, help="comma-separated seeds instead of the study's")
    run.add_argument(
        "--max-minutes",
        type=float,
        help="start no cell after this many wall minutes (default: the study's max_minutes); rerun to continue",
    )
    run.add_argument("--work", help="folder of the run folders and cache (default: the study's `work`)")
    report = actions.add_parser("report", help="tables, intervals and the plot from the records", description=_REPORT)
    report.add_argument("study", help="study declaration (YAML)")
    report.add_argument("--records", help="another records file of this study (default: RESULTS/NAME_records.json)")
    report.add_argument("--out", help="output path without suffix (default: RESULTS/NAME)")


def run(args: argparse.Namespace) -> int:
    from imaseg.study.declaration import load_study

    study = load_study(args.study)
    if args.study_command == "report":
        return _report(study, args)
    return _run(study, args)


def _report(study: Study, args: argparse.Namespace) -> int:
    from imaseg.study.records import StudyRecords
    from imaseg.study.report import write_report

    records = StudyRecords.load(args.records or study.records_path)
    print(write_report(records, study.report, args.out or study.output_prefix))
    return 0


def _run(study: Study, args: argparse.Namespace) -> int:
    import logging

    from imaseg.study.runner import run_study

    outcome = run_study(
        study, only=args.only, folds=args.folds, seeds=args.seeds, max_minutes=args.max_minutes, work=args.work
    )
    logger = logging.getLogger("imaseg.study")
    logger.info(
        "%d cells run, %d already done; records: %s", len(outcome.ran), len(outcome.skipped), study.records_path
    )
    if outcome.stopped_before:
        logger.info("stopped before %s (--max-minutes); rerun the same command to continue", outcome.stopped_before)
    return 0
