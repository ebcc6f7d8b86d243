"""A study's progress: cells done / stale / left per configuration, the CPU minutes left, and `study status`."""

from __future__ import annotations

from pathlib import Path

import yaml

from imaseg.cli import main
from imaseg.study.cells import cell_fingerprints, expand_cells
from imaseg.study.declaration import Configuration, Study, load_study
from imaseg.study.progress import ConfigurationProgress, format_progress, study_progress
from imaseg.study.records import StudyRecords


def _study(results: Path = Path("/r")) -> Study:
    configurations = (Configuration("std", "std"), Configuration("ft", "pgd-at", train={"eps": 1.0}, init="std"))
    return Study(
        name="toy", source=Path("/s/toy.yaml"), data=Path("/d"), work=Path("/w"), results=results,
        folds=(0, 1), seeds=(0,), configurations=configurations, evaluate={"eps": [0.5]},
    )  # fmt: skip


def _add(records: StudyRecords, key: str, fingerprint: str, minutes: float) -> None:
    records.add(key, {"cpu_minutes": minutes, "counts": {"clean": {}}}, fingerprint, {})


def test_done_stale_and_left_with_the_minutes_of_the_done_cells():
    study = _study()
    cells = expand_cells(study)
    prints = cell_fingerprints(study, cells)
    records = StudyRecords()
    _add(records, "std fold0 seed0", prints["std fold0 seed0"], 2.0)
    _add(records, "std fold1 seed0", prints["std fold1 seed0"], 4.0)
    _add(records, "ft fold0 seed0", "settings of yesterday", 10.0)  # stale: counted as work left, its time not used
    std, ft = study_progress(study, records, cells)
    assert (std.name, std.done, std.stale, std.left, std.total) == ("std", 2, 0, 0, 2)
    assert std.cpu_minutes_per_cell == 3.0 and std.cpu_minutes_left == 0.0 and std.measured
    assert (ft.done, ft.stale, ft.left) == (0, 1, 1)
    assert ft.cpu_minutes_per_cell == 3.0 and not ft.measured  # no ft cell done: the mean over the done cells
    assert ft.cpu_minutes_left == 6.0


def test_nothing_done_leaves_the_time_unknown():
    study = _study()
    (std, ft) = study_progress(study, StudyRecords(), expand_cells(study, folds=[1]))
    assert (std.total, std.left, std.cpu_minutes_left) == (1, 1, None)
    table = format_progress([std, ft])
    assert table.splitlines()[-1].split() == ["all", "0/2", "0", "2", "?"]


def test_the_table_flags_borrowed_estimates():
    rows = [
        ConfigurationProgress("std", total=2, done=2, stale=0, cpu_minutes_per_cell=3.0, measured=True),
        ConfigurationProgress("ft", total=2, done=0, stale=1, cpu_minutes_per_cell=3.0, measured=False),
    ]
    lines = format_progress(rows).splitlines()
    assert lines[2].split() == ["ft", "0/2", "1", "1", "3.0*", "6.0"]
    assert lines[3].split() == ["all", "2/4", "1", "1", "6.0"]
    assert lines[4].startswith("* no cell of this configuration done yet")


def test_status_command_reads_the_declaration_and_the_records(tmp_path, capsys):
    declaration = {
        "name": "toy", "data": "data", "work": "work", "results": "results", "folds": [0, 1], "seeds": [0],
        "evaluate": {"eps": [0.5]}, "configurations": {"std": {"method": "std"}},
    }  # fmt: skip
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(declaration))
    study = load_study(path)
    records = StudyRecords()
    key = "std fold0 seed0"
    _add(records, key, cell_fingerprints(study, expand_cells(study))[key], 5.0)
    records.save(study.records_path)
    assert main(["study", "status", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["std", "1/2", "0", "1", "5.0", "5.0"]
    assert main(["study", "status", str(path), "--folds", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split() == ["std", "1/1", "0", "0", "5.0", "0.0"]
