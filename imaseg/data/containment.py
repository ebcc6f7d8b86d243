"""What a data set may pull in: files inside its own folder, however they are reached.

A ``dataset.json`` entry (``../..`` or an absolute path) and a symbolic link (to a file, or ``imagesTr/``
itself) are both resolved and checked against the data folder in every layout (MSD, nnU-Net, plain
pairs); a file outside it is refused unless the user passes ``--allow-outside-paths``, since either would
pull any readable file (another patient's scan) into the outputs.
"""

from __future__ import annotations

from pathlib import Path

from imaseg.data.errors import DataError

__all__ = ["listed_path", "refuse_outside_links"]


def listed_path(root: Path, value: object, what: str, allow_outside_paths: bool) -> Path:
    """A path listed in dataset.json, resolved; refused when it is no string or leaves the data folder."""
    meta = root / "dataset.json"
    if not isinstance(value, str) or not value:
        raise DataError(f"{meta}: a training entry's {what} must be a path string, got {value!r}", [meta])
    try:
        path = (root / value).resolve()
    except (OSError, RuntimeError) as error:  # a symbolic link loop
        raise DataError(f"{meta}: cannot resolve the {what} {value!r} ({error})", [meta]) from None
    if not allow_outside_paths and not path.is_relative_to(root.resolve()):
        raise DataError(
            f"{meta}: the {what} {value!r} resolves to {path}, outside the data folder {root.resolve()}; move the "
            "file into the folder, or pass --allow-outside-paths if you trust this dataset.json",
            [meta],
        )
    return path


def refuse_outside_links(paths: list[Path], root: Path) -> None:
    """Symbolic links that lead out of the data folder are refused as dataset.json entries outside it are."""
    inside = root.resolve()
    outside = {}
    for path in paths:
        try:
            target = path.resolve()
        except (OSError, RuntimeError):  # a link loop: named when the file is read
            continue
        if not target.is_relative_to(inside):
            outside[str(path)] = str(target)
    if outside:
        listed = ", ".join(f"{link} -> {target}" for link, target in outside.items())
        raise DataError(
            f"symbolic links lead outside the data folder {inside}: {listed}; copy the files into the folder, or "
            "pass --allow-outside-paths if you trust this data set",
            list(outside),
        )
