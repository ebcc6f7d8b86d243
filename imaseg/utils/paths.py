"""Outputs never over inputs: an output folder equal to, or inside, a folder a command reads is refused.

``imaseg predict RUN --input scans/ --output scans/`` would write label maps over the images it reads;
``imaseg preprocess --data D --out D/cache`` would mix the cache into the data set. Both are refused before
anything is written, with the two folders named.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> refuse_output_in_input(root / "seg", {"--input": root / "scans"}, output_flag="--output")
>>> try:
...     refuse_output_in_input(root / "scans" / "seg", {"--input": root / "scans"}, output_flag="--output")
... except ValueError as error:
...     print("inside --input" in str(error))
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = ["refuse_output_in_input"]

PathLike = str | os.PathLike[str]


def _resolved(path: PathLike) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a link loop: compare the absolute path as written
        return Path(os.path.abspath(path))


def refuse_output_in_input(output: PathLike, inputs: Mapping[str, PathLike | None], *, output_flag: str) -> None:
    """Raise ``ValueError`` when ``output`` is one of the ``inputs`` (flag -> path) or lies inside one.

    A file input counts as its folder for equality only (``--input scans/a.nii.gz --output scans/`` would
    write ``scans/a.nii.gz``); folders count with everything below them. Links are resolved first.

    Raises:
        ValueError: naming both folders and the fix.
    """
    out = _resolved(output)
    for flag, value in inputs.items():
        if value is None:
            continue
        source = _resolved(value)
        if source.is_file():
            folder, clash = source.parent, out in (source, source.parent)
            relation = f"the folder of {flag} {value}"
        else:
            folder, clash = source, out == source or out.is_relative_to(source)
            relation = f"{'the same folder as' if out == source else 'inside'} {flag} {value}"
        if clash:
            raise ValueError(
                f"{output_flag} {output} is {relation}: imaseg would write among the files it reads (and could "
                f"replace them); choose an {output_flag} outside {folder}"
            )
