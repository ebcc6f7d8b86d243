"""The top-level package re-exports the names users need, each documented, loaded on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

import imaseg


@pytest.mark.parametrize("name", sorted(set(imaseg.__all__) - {"__version__"}))
def test_every_exported_name_resolves_and_is_documented(name):
    value = getattr(imaseg, name)
    assert (value.__doc__ or "").strip(), f"imaseg.{name} has no docstring"
    assert name in imaseg.__doc__, f"imaseg.{name} is missing from the package docstring's table"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        imaseg.nothing  # noqa: B018


def test_importing_the_package_loads_no_torch():
    code = "import sys, imaseg; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
