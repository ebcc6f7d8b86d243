"""``build_report`` / ``imaseg report``: sections, embedded figures, the Markdown twin, numbers, errors."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
from html import unescape
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from imaseg.cli import main
from imaseg.report import build_report, collect_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r"<img alt='([^']*)' src='data:image/png;base64,([^']*)'>")
MD_IMG = re.compile(r"!\[([^\]]*)\]\(([^)]*)\)")

SECTIONS = [
    "Threat model and data",
    "Runs",
    "Clean and robust Dice (worst-l2)",
    "Dice and HD95 against the budget",
    "Per case",
    "Clinical endpoints",
    "Sanity checks",
    "Training",
    "IMA margins: ima",
    "Overlays",
    "Notes",
]


def _html(report) -> str:
    return report.html.read_text(encoding="utf-8")


def _md(report) -> str:
    return report.md.read_text(encoding="utf-8")


def _summary(run: Path) -> dict:
    return json.loads((run / "eval" / "default" / "summary.json").read_text())


def _images(report) -> dict[str, bytes]:
    return {name: base64.b64decode(data) for name, data in IMG.findall(_html(report))}


def test_report_files_land_beside_the_runs(report):
    parent = report.runs[0].parent
    assert report.html == parent / "report.html" and report.md == parent / "report.md"
    assert report.html.is_file() and report.md.is_file()
    assert _html(report).startswith("<!doctype html>") and _html(report).rstrip().endswith("</html>")
    assert _md(report).startswith("# Robustness report: std, ima")


@pytest.mark.parametrize("section", SECTIONS)
def test_every_section_is_in_both_documents(report, section):
    assert f"<h2>{section}</h2>" in _html(report)
    assert f"\n## {section}\n" in _md(report)


def test_sections_come_in_order_and_only_the_ima_run_has_margins(report):
    headings = re.findall(r"<h2>(.*?)</h2>", _html(report))
    assert headings == SECTIONS
    assert "IMA margins: std" not in _html(report)


def test_every_image_is_an_embedded_png_that_decodes(report):
    images = _images(report)
    assert len(IMG.findall(_html(report))) == _html(report).count("<img"), "every <img> is a base64 PNG"
    assert len(images) >= 8
    for name, png in images.items():
        assert png.startswith(PNG_SIGNATURE), name
        pixels = mpimg.imread(io.BytesIO(png), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] >= 100 and pixels.shape[1] >= 100, (name, pixels.shape)
        assert np.ptp(pixels[..., :3]) > 0.2, f"{name} is blank"


def test_the_expected_figures_are_present(report):
    names = set(_images(report))
    attacks = ("pgd-l2", "worst-l2")
    expected = {f"dice_{a}" for a in attacks} | {f"hd95_{a}" for a in attacks} | {"training", "margins_ima"}
    assert expected <= names, expected - names
    assert not {"dice_noise-l2", "hd95_noise-l2"} & names, "flat noise curves are a sentence, not panels"
    assert "noise-l2 (same-budget random noise, a baseline) moved global Dice by at most" in unescape(_html(report))
    overlays = {n for n in names if n.startswith("overlay_")}
    cases = _summary(report.runs[0])["cases"]
    assert overlays == {f"overlay_std_{cases[0]}", f"overlay_ima_{cases[0]}"}, "overlays 1: one case per run"


def test_markdown_references_png_files_that_exist_and_match_the_html(report):
    images = _images(report)
    references = MD_IMG.findall(_md(report))
    assert {name for name, _ in references} == set(images)
    for name, target in references:
        path = report.md.parent / target
        assert path.suffix == ".png" and path.is_file(), target
        assert path.read_bytes() == images[name]


def test_runs_table_names_each_run_and_method(report):
    md = _md(report)
    assert re.search(r"^\| std \| STD \|  \| 8 \|", md, re.M), "std: 8 epochs, no method settings"
    assert re.search(r"^\| ima \| IMA \(voxel\) \| delta [\d.]+, eps_max [\d.]+, tau [\d.]+, 2 steps \| 1 \|", md, re.M)


@pytest.mark.parametrize("run_index", [0, 1], ids=["std", "ima"])
def test_headline_table_holds_the_summary_numbers(report, run_index):
    run = report.runs[run_index]
    summary = _summary(run)
    entry = summary["attacks"]["worst-l2"]

    def shown(cell: dict) -> str:
        lo, hi = cell["ci_global"]
        assert lo <= cell["mean_dice"]["global"] <= hi
        return f"{cell['mean_dice']['global']:.3f} ({lo:.3f}-{hi:.3f})"

    cells = [shown(summary["clean"])]
    cells += [shown(c) for e, c in zip(entry["eps"], entry["cells"]) if e > 0]
    cells.append(f"{entry['auc']:.3f}")
    section = _md(report).split("## Clean and robust Dice (worst-l2)")[1].split("\n## ")[0]
    assert "| run | method | clean | eps 0.5 | eps 1 | AUC |" in section, "no eps-0 column repeating clean"
    row = next(line for line in section.splitlines() if line.startswith(f"| {run.name} | "))
    assert row.strip(" |").split(" | ")[2:] == cells


def test_per_case_table_holds_the_mean_dice_of_each_case(report):
    run = report.runs[0]
    with open(run / "eval" / "default" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    md = _md(report)
    for case in _summary(run)["cases"]:
        clean = np.nanmean(
            [float(r["dice"]) for r in rows if r["case"] == case and r["attack"] == "clean" and r["dice"]]
        )
        attacked = np.nanmean(
            [
                float(r["dice"])
                for r in rows
                if r["case"] == case and r["attack"] == "worst-l2" and float(r["eps"]) == 0.5 and r["dice"]
            ]
        )
        assert f"| {case} | {clean:.3f} | {attacked:.3f} |" in md


def test_sanity_checks_and_notes_are_spelled_out(report):
    html = unescape(_html(report))
    for name in ("std", "ima"):
        assert f"{name}: forward pass deterministic (eps = 0 equals clean Dice): yes (max difference 0)." in html
        assert f"{name}: noise weaker than the attack at every budget:" in html
        assert f"{name}: Dice never rises with the budget:" in html
    for text in _summary(report.runs[0])["aggregations"].values():
        assert text in html
    md = _md(report)
    assert "Methods: " in md and "arXiv 2005.09147" in md, "citations of what was used"
    assert "Jaeger" not in md, "no chest X-ray citation for heart data"


def test_report_of_an_unevaluated_run_says_so(tiny_run, tmp_path):
    run = tmp_path / "fresh"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    html, md = build_report([run], tmp_path / "out" / "r", title="Only trained")
    text = html.read_text()
    assert "No evaluation found (RUN/eval/default/summary.json)" in text
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert headings == ["Runs", "Training", "Notes"]
    assert md.read_text().startswith("# Only trained")
    assert (tmp_path / "out" / "r_files" / "training.png").is_file()


def test_collect_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"is not a run folder \(no config\.yaml\)"):
        collect_run(tmp_path)


def test_collect_run_reads_what_the_run_holds(report):
    data = collect_run(report.runs[1])
    assert data.name == "ima" and data.method.startswith("IMA")
    assert data.summary is not None and data.margins is not None and len(data.log) == 1
    assert len(data.results) == len(_summary(report.runs[1])["cases"]) * 3 * (1 + 3 * 3)
    assert set(data.overlays) == {_summary(report.runs[1])["cases"][0]}


def test_cli_report_on_a_folder_that_is_not_a_run_exits_1(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "imaseg report: error:" in err and "is not a run folder" in err


def test_cli_report_writes_both_documents(tiny_run, tmp_path, capsys):
    run = tmp_path / "trained"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    out = tmp_path / "cli" / "compare"
    assert main(["report", str(run), "--out", str(out), "--title", "CLI report"]) == 0
    assert (out.parent / "compare.html").is_file() and (out.parent / "compare.md").is_file()
    assert "<title>CLI report</title>" in (out.parent / "compare.html").read_text()
    assert "report:" in capsys.readouterr().err


def test_runs_with_the_same_folder_name_keep_their_own_figures(evaluated_runs, tmp_path):
    """Comparing runs/a/seed0 with runs/b/seed0: the Markdown must not point both at one overwritten PNG."""
    runs = []
    for parent, factor in (("a", 1.0), ("b", 0.5)):
        run = tmp_path / parent / "seed0"
        shutil.copytree(evaluated_runs[1], run, ignore=shutil.ignore_patterns("eval"))
        margins = json.loads((run / "margins.json").read_text())
        for epoch in margins["epochs"]:
            epoch["margins"] = [m * factor for m in epoch["margins"]]
        (run / "margins.json").write_text(json.dumps(margins))
        runs.append(run)
    html, md = build_report(runs, tmp_path / "same")
    images = [base64.b64decode(data) for _, data in IMG.findall(html.read_text())]
    targets = [target for _, target in MD_IMG.findall(md.read_text())]
    assert len(targets) == len(set(targets)) == len(images) == 3, "training + one margins figure per run"
    for target, png in zip(targets, images):
        assert (md.parent / target).read_bytes() == png, target
    headings = re.findall(r"<h2>IMA margins: (.*?)</h2>", html.read_text())
    assert len(set(headings)) == 2, headings


def test_the_threat_model_box_states_attacker_budget_data_and_history(report):
    html = unescape(_html(report))
    assert "White-box attacker with full access to the weights and gradients" in html
    assert "Attacks: pgd-l2: 2-step PGD, loss ce+dice" in html and "noise-l2: random noise" in html
    assert "L2 over each 2D slice (the model's input) (an L2 budget of 1 is a per-voxel RMS of 0.0312" in html
    assert "PSNR of 30.1 dB" in html
    assert (
        "ima: IMA (voxel) trained 1 epoch(s)" in html and "fine-tuned from run_std (STD) after its 8 epoch(s)" in html
    )
    assert "std: STD trained 8 epoch(s)" in html and "from scratch." in html


def test_report_files_are_readable_by_colleagues(report):
    assert report.html.stat().st_mode & 0o044 == 0o044, "group and others may read (not mkstemp's 0600)"


def test_headline_matches_cells_by_budget_when_runs_were_scored_on_other_grids(evaluated_runs, tmp_path):
    other = tmp_path / "short"
    shutil.copytree(evaluated_runs[1], other)
    path = other / "eval" / "default" / "summary.json"
    summary = json.loads(path.read_text())
    entry = summary["attacks"]["worst-l2"]
    assert entry["eps"] == [0.0, 0.5, 1.0]
    entry["eps"], entry["cells"] = entry["eps"][:2], entry["cells"][:2]  # scored up to eps 0.5 only
    path.write_text(json.dumps(summary))
    _, md = build_report([evaluated_runs[0], other], tmp_path / "mixed")
    section = md.read_text().split("## Clean and robust Dice (worst-l2)")[1].split("\n## ")[0]
    row = next(line for line in section.splitlines() if line.startswith("| short | ")).strip(" |").split(" | ")
    half = entry["cells"][1]
    assert row[3] == f"{half['mean_dice']['global']:.3f} ({half['ci_global'][0]:.3f}-{half['ci_global'][1]:.3f})"
    assert row[4] == "-"  # not scored at eps 1: no cell of another budget slides under it
    assert row[5] == f"{entry['auc']:.3f} (eps 0..0.5)"
