"""The repository's own files a user or a citation tool reads: LICENSE, CITATION.cff, pyproject, ./run."""

from __future__ import annotations

import re
import tomllib

import yaml
from helpers import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _floor(name: str) -> tuple[int, ...]:
    (spec,) = [d for d in PROJECT["dependencies"] if re.match(rf"{name}\b", d)]
    return tuple(int(p) for p in re.search(r">=([\d.]+)", spec).group(1).split("."))


def test_the_licence_file_matches_pyproject():
    assert PROJECT["license"]["text"] == "Apache-2.0"
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()


def test_citation_file_cites_imaseg_and_the_ima_paper():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "Apache-2.0"
    assert citation["version"] == PROJECT["version"]
    (ima,) = [r for r in citation["references"] if "IMA" in r["title"]]
    assert any("2005.09147" in i["value"] for i in ima["identifiers"])


def test_every_declared_optional_dependency_is_imported_somewhere():
    extras = PROJECT["optional-dependencies"]
    sources = "\n".join(p.read_text() for p in (REPO / "imaseg").rglob("*.py"))
    assert "import SimpleITK" in sources and "SimpleITK>=2.2" in extras["itk"]
    assert "from ignite" in sources and any("ignite" in d for d in extras["engines"])


def test_the_declared_floors_allow_what_the_code_uses():
    """NumPy 1.x has no ``np.trapezoid``; Python 3.10 no ``tomllib``; MONAI 1.4 pins NumPy 1.x."""
    sources = "\n".join(p.read_text() for p in (REPO / "imaseg").rglob("*.py"))
    if "np.trapezoid" in sources:
        assert _floor("numpy") >= (2, 0) and _floor("monai") >= (1, 5) and _floor("scipy") >= (1, 13)
    tests = "\n".join(p.read_text() for p in (REPO / "tests").rglob("*.py"))
    if "import tomllib" in tests:
        assert PROJECT["requires-python"].startswith(">=3.11")


def test_run_installs_the_cpu_wheel_the_readme_promises():
    run = (REPO / "run").read_text()
    index = re.search(r'torch_index="\$\{IMASEG_TORCH_INDEX-([^}]+)\}"', run)
    assert index and index.group(1) == "https://download.pytorch.org/whl/cpu"
    assert '"$torch_spec" ${torch_index:+--extra-index-url "$torch_index"}' in run
    assert "from PyTorch's CPU index" in (REPO / "README.md").read_text()
