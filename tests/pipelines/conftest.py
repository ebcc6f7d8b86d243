"""A clean logging state around every pipeline test."""

from __future__ import annotations

import pytest
from pipeline_tools import restored_logging


@pytest.fixture(autouse=True)
def _restore_logging():
    with restored_logging():
        yield
