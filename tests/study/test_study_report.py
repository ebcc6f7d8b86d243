"""Report functions on hand-made records: pooled Dice and its interval over patients, paired differences, the
comparison at matched clean Dice, the tables and the plot, checked against hand computation."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imaseg.study.plot import plot, plot_title, point_colours, zoomed_settings
from imaseg.study.pooling import pooled
from imaseg.study.records import StudyRecords
from imaseg.study.report import write_report
from imaseg.study.report_config import Comparison, Curve, ReportSettings
from imaseg.study.tables import markdown

PATIENTS = {"p1_a": "p1", "p1_b": "p1", "p2_a": "p2"}
COMPARE = Comparison("ima", "IMA", "pgd-at", "PGD-AT", against_setting="pgd a", clean_within=0.01, gain=0.03)
SETTINGS = ReportSettings(budget=1.0, compare=COMPARE, curves=(Curve("PGD", "pgd-at", ("pgd a", "pgd b"), True),))


def _dice(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn)


def _record(setting: str, method: str, clean: dict, robust: dict, *, fold: int = 0, seed: int = 0) -> dict:
    counts = {"clean": clean, "0.5": clean, "1": robust}
    return {"method": method, "setting": setting, "fold": fold, "seed": seed, "cpu_minutes": 1.5, "counts": counts}


def _two_patients(p1: list, p2: list) -> dict:
    return {"p1_a": [p1], "p2_a": [p2]}


# one case per patient; "pgd a" is the cleaner end of PGD-AT's front, "pgd b" the more robust one, and
# "ima x" lies between them in clean Dice (16/18 = 8/9: the mixture 0.5 a + 0.5 b, see the matched test)
RECORDS = [
    _record("pgd a", "pgd-at", _two_patients([9, 1, 0], [9, 0, 1]), _two_patients([3, 4, 3], [3, 3, 4])),
    _record("pgd b", "pgd-at", _two_patients([7, 2, 1], [7, 1, 2]), _two_patients([6, 1, 1], [6, 1, 1])),
    _record("ima x", "ima", _two_patients([8, 1, 1], [8, 1, 1]), _two_patients([7, 1, 1], [7, 1, 1])),
]


def test_pooled_dice_sums_counts_and_the_interval_resamples_patients():
    # patient p1 has two very different cases: resampled as one patient the interval is [Dice p1, Dice p2];
    # resampling cases would reach Dice 0 (p1_b alone) and 1 (p1_a alone)
    clean = {"p1_a": [[10, 0, 0]], "p1_b": [[0, 5, 5]], "p2_a": [[6, 1, 1]]}
    record = _record("std", "std", clean, clean)
    entry = pooled([record], PATIENTS, ReportSettings())["methods"]["std"]
    assert entry["clean"]["dice"] == pytest.approx(_dice(16, 6, 6))
    assert entry["clean"]["ci"] == pytest.approx([_dice(10, 5, 5), _dice(6, 1, 1)])
    assert entry["auc"]["dice"] == pytest.approx(_dice(16, 6, 6))  # the same Dice at both budgets
    assert (entry["method"], entry["folds"], entry["cpu_minutes"]) == ("std", [0], 1.5)


def test_a_single_budget_has_no_area():
    record = {**RECORDS[0], "counts": {k: RECORDS[0]["counts"][k] for k in ("clean", "1")}}
    summary = pooled([record], PATIENTS, ReportSettings())
    assert "auc" not in summary["methods"]["pgd a"]
    assert markdown(summary, ReportSettings()).splitlines()[2].endswith(" | - | 2 |")


def test_pooled_over_folds_and_seeds():
    first = _record("std", "std", {"p1_a": [[4, 1, 1]]}, {"p1_a": [[4, 1, 1]]}, fold=0)
    second = _record("std", "std", {"p2_a": [[2, 2, 2]]}, {"p2_a": [[2, 2, 2]]}, fold=1)
    entry = pooled([first, second], PATIENTS, ReportSettings())["methods"]["std"]
    assert entry["clean"]["dice"] == pytest.approx(_dice(6, 3, 3))
    assert (entry["folds"], entry["cpu_minutes"]) == ([0, 1], 3.0)
    # with two seeds, each seed's case is an observation of its patient (not one overwriting the other)
    reseeded = _record("std", "std", {"p1_a": [[0, 3, 3]]}, {"p1_a": [[0, 3, 3]]}, seed=1)
    entry = pooled([first, reseeded], PATIENTS, ReportSettings())["methods"]["std"]
    assert entry["clean"]["dice"] == pytest.approx(_dice(4, 4, 4))
    assert entry["clean"]["ci"] == pytest.approx([entry["clean"]["dice"]] * 2)  # one patient: no spread


def test_paired_differences_pooled_and_by_fold():
    summary = pooled(RECORDS, PATIENTS, SETTINGS)
    pair = summary["paired"]["ima x - pgd a @ clean"]
    assert pair["difference"] == pytest.approx(_dice(16, 2, 2) - _dice(18, 1, 1))
    # two patients: every replicate is p1 twice, p2 twice or one of each; the interval spans their differences
    each = [_dice(8, 1, 1) - _dice(9, 1, 0), _dice(8, 1, 1) - _dice(9, 0, 1), pair["difference"]]
    assert [pair["low"], pair["high"]] == pytest.approx([min(each), max(each)])
    assert set(summary["paired"]) == {f"ima x - pgd {r} @ {k}" for r in "ab" for k in ("clean", "1")}
    assert summary["paired_per_fold"]["ima x - pgd a @ 1 fold 0"] == summary["paired"]["ima x - pgd a @ 1"]


def test_matched_clean_dice_mixes_the_bracketing_front_points():
    # clean Dice of ima x is 8/9; the mixture w a + (1 - w) b has tp 14 + 4w, fp + fn 6 - 4w, so
    # 2 (14 + 4w) / (2 (14 + 4w) + 6 - 4w) = 8/9 gives w = 0.5; at eps 1 the mixture is [4.5, 3.5, 3.5] + ...
    (row,) = pooled(RECORDS, PATIENTS, SETTINGS)["matched"]
    assert row["reference"] == "0.50 x pgd a + 0.50 x pgd b"
    assert row["clean"]["difference"] == pytest.approx(0.0, abs=1e-9)
    assert row["1"]["difference"] == pytest.approx(_dice(14, 2, 2) - _dice(9, 4.5, 4.5))
    assert row["dominates"] == "yes"
    strict = ReportSettings(compare=Comparison("ima", "IMA", "pgd-at", "PGD-AT", gain=0.5))
    (row,) = pooled(RECORDS, PATIENTS, strict)["matched"]
    assert row["dominates"] == "no: eps 1 +0.208, not >= +0.5 with its CI above 0"


def test_matched_also_compares_mean_per_case_dice_against_the_same_mixture():
    # patient p1 has a large and a small case, so case means differ from global Dice; "ima x" has the pooled clean
    # counts [16, 4, 3] of the mixture 0.5 a + 0.5 b ([16, 3.5, 3.5]: Dice 32/39 both), w from (28 + 8w) / (38 + 2w)
    a = (
        {"p1_a": [[10, 0, 0]], "p1_b": [[2, 1, 1]], "p2_a": [[6, 1, 1]]},
        {"p1_a": [[2, 4, 4]], "p1_b": [[1, 1, 1]], "p2_a": [[1, 2, 2]]},
    )
    b = (
        {"p1_a": [[8, 1, 1]], "p1_b": [[2, 2, 2]], "p2_a": [[4, 2, 2]]},
        {"p1_a": [[4, 2, 2]], "p1_b": [[1, 1, 1]], "p2_a": [[3, 1, 1]]},
    )
    x = (
        {"p1_a": [[6, 2, 1]], "p1_b": [[4, 1, 1]], "p2_a": [[6, 1, 1]]},
        {"p1_a": [[5, 1, 1]], "p1_b": [[1, 0, 1]], "p2_a": [[2, 1, 1]]},
    )
    records = [_record("pgd a", "pgd-at", *a), _record("pgd b", "pgd-at", *b), _record("ima x", "ima", *x)]
    (row,) = pooled(records, PATIENTS, SETTINGS)["matched"]
    assert row["reference"] == "0.50 x pgd a + 0.50 x pgd b"
    assert row["clean"]["difference"] == pytest.approx(0.0, abs=1e-9)  # matched in global Dice, not per case
    # the mixture's cases: clean [9, .5, .5], [2, 1.5, 1.5], [5, 1.5, 1.5]; eps 1 [3, 3, 3], [1, 1, 1], [2, 1.5, 1.5]
    clean_p1 = (_dice(6, 2, 1) + _dice(4, 1, 1)) / 2 - (_dice(9, 0.5, 0.5) + _dice(2, 1.5, 1.5)) / 2
    clean_p2 = _dice(6, 1, 1) - _dice(5, 1.5, 1.5)
    clean = (_dice(6, 2, 1) + _dice(4, 1, 1) + _dice(6, 1, 1)) / 3 - (18 / 19 + 4 / 7 + 10 / 13) / 3
    assert row["clean_case"]["difference"] == pytest.approx(clean) == pytest.approx(0.05637, abs=1e-5)
    # two patients: replicates are p1 twice, p2 twice or one of each; the interval spans those differences
    assert [row["clean_case"]["low"], row["clean_case"]["high"]] == pytest.approx([clean_p1, clean_p2])
    robust = (5 / 6 + 2 / 3 + 2 / 3) / 3 - (0.5 + 0.5 + 4 / 7) / 3
    assert row["1_case"]["difference"] == pytest.approx(robust) == pytest.approx(0.19841, abs=1e-5)
    assert row["1"]["difference"] == pytest.approx(_dice(8, 2, 3) - _dice(6, 5.5, 5.5))  # global, unchanged
    assert row["dominates"] == "yes"


def test_markdown_tables():
    tables = markdown(pooled(RECORDS, PATIENTS, SETTINGS), SETTINGS)
    lines = tables.splitlines()
    assert lines[0] == "| configuration | folds | clean | eps 0.5 | eps 1 | AUC 0.5..1 | CPU min |"
    assert lines[2].startswith(f"| pgd a | 0 | {_dice(18, 1, 1):.3f} (")
    assert "| minus pgd a, paired | clean, pooled | eps 1, pooled | eps 1, fold 0 |" in lines
    assert (
        "| IMA setting | PGD-AT frontier at its clean Dice | clean, paired | eps 1, paired | dominates? "
        "| clean, case mean, paired | eps 1, case mean, paired |"
    ) in lines
    assert lines[-1] == (
        "| ima x | 0.50 x pgd a + 0.50 x pgd b | -0.000 (-0.000..-0.000) | +0.208 (+0.208..+0.208) | yes "
        "| -0.000 (-0.000..-0.000) | +0.208 (+0.208..+0.208) |"
    )
    plain = markdown(pooled(RECORDS, PATIENTS, ReportSettings()), ReportSettings())
    assert "paired" not in plain and len(plain.splitlines()) == 5


def test_write_report(tmp_path):
    records = StudyRecords(patients=dict(PATIENTS))
    for index, record in enumerate(RECORDS):
        records.add(f"{record['setting']} fold0 seed0", record, f"f{index}", {})
    tables = write_report(records, SETTINGS, tmp_path / "out" / "toy")
    assert (tmp_path / "out" / "toy.md").read_text() == tables
    assert (tmp_path / "out" / "toy.png").read_bytes()[:4] == b"\x89PNG"
    assert write_report(StudyRecords(), SETTINGS, tmp_path / "empty").startswith("no finished cells yet; nothing")
    assert not (tmp_path / "empty.png").exists() and not (tmp_path / "empty.json").exists()
    (tmp_path / "out" / "toy.md").write_text("old")
    assert write_report(records, SETTINGS, tmp_path / "out" / "toy") == tables  # its own report: replaced
    assert (tmp_path / "out" / "toy.md").read_text() == tables


def test_write_report_keeps_a_json_file_another_tool_wrote(tmp_path):
    records = StudyRecords(patients=dict(PATIENTS))
    for index, record in enumerate(RECORDS):
        records.add(f"{record['setting']} fold0 seed0", record, f"f{index}", {})
    other = tmp_path / "attack_strength.json"
    other.write_text('{"cells": 10}')
    with pytest.raises(FileExistsError, match=r"attack_strength.json exists and is not a study report.*--out PREFIX\)"):
        write_report(records, SETTINGS, tmp_path / "attack_strength")
    assert other.read_text() == '{"cells": 10}' and not (tmp_path / "attack_strength.md").exists()


@pytest.mark.parametrize("suffix", [".md", ".png"])
def test_write_report_keeps_a_table_or_plot_without_its_report_json(tmp_path, suffix):
    records = StudyRecords(patients=dict(PATIENTS))
    for index, record in enumerate(RECORDS):
        records.add(f"{record['setting']} fold0 seed0", record, f"f{index}", {})
    other = tmp_path / f"threat_transfer{suffix}"
    other.write_text("another tool's")
    with pytest.raises(FileExistsError, match=rf"threat_transfer\{suffix} exists without threat_transfer.json"):
        write_report(records, SETTINGS, tmp_path / "threat_transfer")
    assert other.read_text() == "another tool's" and not (tmp_path / "threat_transfer.json").exists()


def test_point_colours_shade_a_methods_loose_configurations_and_keep_curves_and_declared_ones():
    methods = {name: {"method": method} for name, method in [
        ("pgd a", "pgd-at"), ("pgd b", "pgd-at"), ("pgd c", "pgd-at"), ("pgd d", "pgd-at"), ("pgd e", "pgd-at"),
        ("ima x", "ima"), ("std", "std"),
    ]}  # fmt: skip
    settings = ReportSettings(
        colours={"pgd-at": "tab:blue", "ima": "tab:red", "pgd e": "green"},
        curves=(Curve("PGD", "pgd-at", ("pgd a", "pgd b"), True),),
    )
    colours = point_colours(methods, settings)
    assert colours["pgd a"] == colours["pgd b"] == "tab:blue"  # on the curve: the line's colour
    assert colours["pgd e"] == "green" and colours["ima x"] == "tab:red" and colours["std"] == "grey"
    dark, light = colours["pgd c"], colours["pgd d"]  # the two loose ones: shades, dark then light
    assert isinstance(dark, tuple) and isinstance(light, tuple) and sum(dark) < sum(light)
    from matplotlib.colors import to_rgb

    blue = to_rgb("tab:blue")
    assert dark == pytest.approx(tuple(c * 0.55 for c in blue))
    assert light == pytest.approx(tuple(c + (1 - c) * 0.45 for c in blue))


def test_plot_title_names_the_split_scored():
    assert plot_title("ACDC", [0, 1], "val") == "ACDC, validation patients of folds 0, 1"
    assert plot_title("ACDC", [3], "test") == "ACDC, test patients of fold 3"
    assert plot_title("ACDC (folds 3-4, test patients)", [3, 4], "test") == "ACDC (folds 3-4, test patients)"
    assert plot_title("X-rays (validation images)", [0], "val") == "X-rays (validation images)"
    assert (
        plot_title("Contested models", [0], "test") == "Contested models, test patients of fold 0"
    )  # a word, not a part


def test_declaration_records_and_report_import_without_torch():
    modules = "imaseg.study, imaseg.study.declaration, imaseg.study.records, imaseg.study.report, imaseg.commands.study"
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_zoomed_settings_are_those_above_a_wide_gap_when_two_or_more():
    points = {"std": (0.95, 0.10), "a": (0.93, 0.86), "b": (0.94, 0.80), "c": (0.92, 0.84)}
    assert zoomed_settings(points) == ["a", "b", "c"]  # in the given order
    assert zoomed_settings({**points, "d": (0.9, 0.6)}) == []  # above the widest gap: 0.26 of 0.76, no zoom
    assert zoomed_settings({"std": (0.95, 0.1), "a": (0.93, 0.86), "b": (0.9, 0.12)}) == []  # one above the gap
    assert zoomed_settings({"a": (0.9, 0.1), "b": (0.9, 0.8)}) == []
    assert zoomed_settings({"a": (0.9, 0.0), "b": (0.9, 0.0), "c": (0.9, 0.0)}) == []  # all tied: no gap
    assert zoomed_settings({**points, "n": (0.9, float("nan"))}) == ["a", "b", "c"]  # NaN left out
    assert zoomed_settings({"std": (0.9, 0.7), "a": (0.9, 0.8), "b": (0.9, 0.86)}) == []  # 0.06 of 0.16


def _summary(points: dict[str, tuple[float, float]]) -> dict:
    budget = SETTINGS.budget_key
    return {"methods": {s: {"method": "pgd-at", "folds": [0], "clean": {"dice": x, "ci": [x - 0.01, x + 0.01]},
                            budget: {"dice": y, "ci": [y - 0.01, y + 0.01]}} for s, (x, y) in points.items()}}  # fmt: skip


def test_plot_adds_a_zoom_panel_only_where_robust_points_sit_far_above_the_rest(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    saved: list = []
    monkeypatch.setattr(Figure, "savefig", lambda figure, path, **_: saved.append((figure, path)))
    close = {"pgd a": (0.93, 0.86), "pgd b": (0.94, 0.80)}
    plot(_summary({**close, "std": (0.95, 0.1)}), SETTINGS, tmp_path / "zoom.png")
    plot(_summary({**close, "std": (0.95, 0.7)}), SETTINGS, tmp_path / "one.png")
    (zoom, _), (one, _) = saved
    assert len(zoom.axes) == 2 and len(one.axes) == 1  # a second panel beside the first, only where it helps
    assert zoom.axes[1].get_ylim()[0] > 0.5 and len(zoom.axes[0].patches) == 1  # zoomed; boxed on the full view


def test_pooling_cells_scored_on_other_budgets_names_the_cell_and_the_fix():
    short = {**RECORDS[0], "counts": {k: v for k, v in RECORDS[0]["counts"].items() if k != "0.5"}}
    with pytest.raises(ValueError, match=r"cell pgd a fold 0 seed 0 has no counts at eps 0.5, .*one evaluate.eps"):
        pooled([short, *RECORDS[1:]], PATIENTS, SETTINGS)


def test_pooling_a_record_without_its_fields_says_what_it_lacks():
    bare = {k: v for k, v in RECORDS[0].items() if k != "cpu_minutes"}
    with pytest.raises(
        ValueError, match=r"setting pgd a fold 0 seed 0: the record lacks \['cpu_minutes'\] .*restore the records file"
    ):
        pooled([bare, *RECORDS[1:]], PATIENTS, SETTINGS)
