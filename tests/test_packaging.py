"""The repository's own files a user or a citation tool reads: LICENSE, CITATION.cff, pyproject."""

from __future__ import annotations

import tomllib
import yaml
from helpers import REPO


def test_the_licence_file_matches_pyproject():
    licence = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert licence == "Apache-2.0"
    assert "Apache License" in (REPO / "LICENSE").read_text() and "Version 2.0" in (REPO / "LICENSE").read_text()


def test_citation_file_cites_imaseg_and_the_ima_paper():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "Apache-2.0"
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert citation["version"] == version
    (ima,) = [r for r in citation["references"] if "IMA" in r["title"]]
    assert any("2005.09147" in i["value"] for i in ima["identifiers"])


def test_every_declared_optional_dependency_is_imported_somewhere():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    sources = "\n".join(p.read_text() for p in (REPO / "imaseg").rglob("*.py"))
    assert "import SimpleITK" in sources and "SimpleITK>=2.2" in extras["itk"]
    assert "from ignite" in sources and any("ignite" in d for d in extras["engines"])
