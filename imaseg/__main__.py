"""``python -m imaseg``: the command line, with nothing imported from the current folder.

``python -m`` puts the current folder first on ``sys.path``, so a ``numpy.py`` or ``yaml/`` lying beside a
received run or data set would be imported (and run) instead of the installed package. That entry is
removed before anything else is imported, as the ``imaseg`` console script never has it (``imaseg/__init__.py``
imports only what Python loaded at start-up). To import a module of your own from the current folder, e.g.
a network factory, put the folder on ``PYTHONPATH``: those entries are kept.
"""

import os
import sys


def _drop_current_folder() -> None:
    if sys.path and sys.path[0] in ("", ".", os.getcwd()):
        del sys.path[0]


_drop_current_folder()

from imaseg.cli import main  # noqa: E402  (after the current folder left sys.path)

sys.exit(main())
