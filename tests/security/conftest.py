"""What a command's flags change for the whole process (memory budget, trusted factories and bundles) is
undone after every test here."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _process_settings_restored():
    from hostile_corpus import process_settings_kept

    with process_settings_kept():
        yield
