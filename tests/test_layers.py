"""The layering of docs/architecture.md holds: read from the imports of every module of imaseg/."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "imaseg"


def _imports(path: Path) -> set[str]:
    """Every imaseg module a file imports, at any depth (TYPE_CHECKING blocks excluded)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                found.add(child.module)
                found.update(f"{child.module}.{a.name}" for a in child.names)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in found if name.startswith("imaseg")}


def _package_imports(package: str) -> dict[str, set[str]]:
    folder = PACKAGE / package.replace("imaseg.", "").replace(".", "/")
    files = sorted(folder.rglob("*.py")) if folder.is_dir() else [folder.with_suffix(".py")]
    return {str(f.relative_to(PACKAGE.parent)): _imports(f) for f in files}


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("imaseg.evaluation", "imaseg.training"),
        ("imaseg.training", "imaseg.evaluation"),
        ("imaseg.attacks", "imaseg.training"),
        ("imaseg.attacks", "imaseg.evaluation"),
        ("imaseg.attacks", "imaseg.losses"),
        ("imaseg.losses", "imaseg.training"),
        ("imaseg.data", "imaseg.attacks"),
        ("imaseg.transforms", "imaseg.attacks"),
        ("imaseg.cache", "imaseg.training"),
        ("imaseg.functional", "imaseg.attacks"),
        ("imaseg.report", "imaseg.attacks"),
        ("imaseg.report", "imaseg.training"),
        ("imaseg.report", "imaseg.evaluation"),
        ("imaseg.prediction", "imaseg.training"),
        ("imaseg.evaluation", "imaseg.prediction"),
        ("imaseg.training", "imaseg.prediction"),
        ("imaseg.inference", "imaseg.evaluation"),
        ("imaseg.inference", "imaseg.prediction"),
        ("imaseg.inference", "imaseg.training"),
        ("imaseg.run_model", "imaseg.evaluation"),
        ("imaseg.run_model", "imaseg.prediction"),
        ("imaseg.run_model", "imaseg.training"),
        ("imaseg.run", "imaseg.attacks"),
        ("imaseg.run", "imaseg.evaluation"),
        ("imaseg.run", "imaseg.training"),
    ],
)
def test_lower_layers_never_import_higher_ones(lower, higher):
    offending = {
        file: sorted(n for n in names if n == higher or n.startswith(higher + "."))
        for file, names in _package_imports(lower).items()
    }
    assert not {f: n for f, n in offending.items() if n}, f"{lower} imports {higher}"


def test_cache_writer_and_reader_do_not_import_each_other():
    assert "imaseg.cache.writer" not in _imports(PACKAGE / "cache" / "reader.py")
    assert "imaseg.cache.reader" not in _imports(PACKAGE / "cache" / "writer.py")


def test_the_run_folder_type_needs_no_torch():
    code = "import sys, imaseg.run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_report_renders_without_torch():
    code = "import sys, imaseg.report, imaseg.report.report, imaseg.report.collect; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_function_is_longer_than_80_lines_anywhere():
    root = PACKAGE.parent
    long = []
    for folder in ("imaseg", "benchmarks", "pipelines"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    if length > 80:
                        long.append(f"{path.relative_to(root)}:{node.name} ({length} lines)")
    assert not long, long


def test_run_folder_file_names_are_spelled_only_in_the_run_module():
    names = ('"config.yaml"', '"preprocessing.json"', '"split.json"', '"log.csv"', '"margins.json"', '"summary.json"')
    root = PACKAGE.parent
    spelled = [
        f"{path.relative_to(root)}: {name}"
        for folder in ("imaseg", "benchmarks", "pipelines")
        for path in sorted((root / folder).rglob("*.py"))
        if path != PACKAGE / "run.py"
        for name in names
        if name in path.read_text(encoding="utf-8")
    ]
    assert not spelled, spelled
