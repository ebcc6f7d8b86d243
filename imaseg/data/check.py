"""Integrity check of a NIfTI data set: load every pair, describe it, and name every problem.

Like nnU-Net's ``--verify_dataset_integrity``, but each message names the file and the fix, and the
report doubles as a description of the data (shape, true spacing, orientation, intensity range,
label values and voxel counts per case).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from imaseg.data.discover import DatasetInfo, discover_with_info
from imaseg.data.errors import DataError
from imaseg.data.images import read_image
from imaseg.data.nifti import NiftiVolume

__all__ = [
    "MAX_LABEL_VALUE",
    "CaseReport",
    "DatasetReport",
    "check_dataset",
    "format_report",
    "inspect_case",
    "validate_case",
]

SPACING_RTOL = 1e-3
ORIGIN_ATOL_MM = 1e-2
MAX_LABEL_VALUE = 2**31 - 1  # the cache stores label maps as int32 (imaseg.cache.writer); larger values would wrap


@dataclass
class CaseReport:
    """What one image/label pair holds, and what is wrong with it (``problems``; empty when fine)."""

    case: str
    image: str
    label: str
    shape: tuple[int, ...] = ()
    channels: int = 1
    spacing: tuple[float, ...] = ()
    orientation: str = ""
    dtype: str = ""
    intensity: tuple[float, float] = (float("nan"), float("nan"))
    label_counts: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class DatasetReport:
    """Per-case reports plus problems of the folder as a whole."""

    root: str
    info: DatasetInfo | None
    cases: list[CaseReport]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(not c.problems for c in self.cases)

    def all_problems(self) -> list[str]:
        return self.problems + [p for c in self.cases for p in c.problems]


def _expected_ndim(info: DatasetInfo) -> int | None:
    if info.tensor_size in ("2D", "3D"):
        return int(info.tensor_size[0])
    return None


def inspect_case(entry: dict, info: DatasetInfo) -> CaseReport:
    """Load one datalist entry and describe it; problems are collected, not raised."""
    image_paths = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
    report = CaseReport(entry["case"], ", ".join(image_paths), entry["label"])
    try:
        channels = [read_image(p) for p in image_paths]
        label = read_image(entry["label"])
    except DataError as error:
        report.problems.append(str(error))
        return report
    first = channels[0]
    report.shape, report.channels, report.spacing = first.shape, len(channels), first.spacing
    report.orientation, report.dtype = first.orientation, str(first.array.dtype)
    if first.spacing_note:
        report.notes.append(f"{first.path}: {first.spacing_note}")
    expected = _expected_ndim(info)
    for volume in channels:
        _check_image(volume, expected, report)
        if volume is not first:
            _check_same_grid(volume, first, report, what="channel")
    _check_label(label, first, info, report)
    finite = [v.array[np.isfinite(v.array)] for v in channels if v.array.size]
    if all(f.size for f in finite):
        report.intensity = (float(min(f.min() for f in finite)), float(max(f.max() for f in finite)))
    return report


def _check_image(volume: NiftiVolume, expected_ndim: int | None, report: CaseReport) -> None:
    array = volume.array
    squeezed = array.ndim > 3 and all(s == 1 for s in array.shape[3:])
    if array.ndim > 3 and not squeezed:
        want = f"{expected_ndim}D" if expected_ndim else "2D or 3D"
        report.problems.append(
            f"{volume.path}: image is {array.ndim}D {array.shape} where {want} was expected; store one channel "
            "per file (nnU-Net CASE_0000/CASE_0001) or pick the time frame you want"
        )
    elif expected_ndim is not None and min(array.ndim, 3) != expected_ndim:
        report.problems.append(
            f"{volume.path}: image is {array.ndim}D {array.shape} but dataset.json says tensorImageSize "
            f"{expected_ndim}D; fix the json or the file"
        )
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            report.problems.append(
                f"{volume.path}: {bad} NaN/Inf voxels; replace them (e.g. with the background value) before use"
            )


def _without_trailing_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _check_same_grid(volume: NiftiVolume, reference: NiftiVolume, report: CaseReport, what: str) -> None:
    if volume.shape[:3] != reference.shape[:3] and _without_trailing_ones(volume.shape) == _without_trailing_ones(
        reference.shape
    ):
        report.problems.append(
            f"{volume.path}: {what} is {volume.array.ndim}D {volume.shape} and the image {reference.array.ndim}D "
            f"{reference.shape} ({reference.path}): the same voxels stored with a different number of axes; save both "
            "with the same dimensions (e.g. drop the axes of size 1 from both, or add them to both)"
        )
        return
    if volume.shape[:3] != reference.shape[:3]:
        report.problems.append(
            f"{volume.path}: {what} shape {volume.shape} does not match image shape {reference.shape} "
            f"({reference.path}); resample it onto the image grid"
        )
        return
    if not np.allclose(volume.spacing, reference.spacing, rtol=SPACING_RTOL):
        report.problems.append(
            f"{volume.path}: {what} spacing {_fmt(volume.spacing)} mm differs from the image's "
            f"{_fmt(reference.spacing)} mm ({reference.path}); resample it onto the image grid"
        )
        return
    gap = float(np.abs(volume.affine[:3, 3] - reference.affine[:3, 3]).max())
    turn = float(np.abs(volume.affine[:3, :3] - reference.affine[:3, :3]).max())
    if gap > ORIGIN_ATOL_MM or turn > 1e-3 * max(reference.spacing):
        report.problems.append(
            f"{volume.path}: {what} affine differs from the image's ({reference.path}): origin off by "
            f"{gap:.3g} mm, direction/spacing off by {turn:.3g}; the two must share one voxel grid"
        )


def _check_label(label: NiftiVolume, image: NiftiVolume, info: DatasetInfo, report: CaseReport) -> None:
    if label.array.ndim > 3 and any(s != 1 for s in label.array.shape[3:]):
        report.problems.append(f"{label.path}: label is {label.array.ndim}D {label.shape}; labels must be 2D or 3D")
        return
    _check_same_grid(label, image, report, what="label")
    array = label.array
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            report.problems.append(f"{label.path}: label holds NaN/Inf values; a label map must hold class indices")
            return
        if not np.all(array == np.round(array)):
            report.problems.append(
                f"{label.path}: label holds non-integer values (a probability map?); store class indices"
            )
            return
    if array.size and float(array.max()) > MAX_LABEL_VALUE:
        report.problems.append(
            f"{label.path}: label values up to {array.max()} exceed {MAX_LABEL_VALUE} (2^31 - 1), the largest class "
            "value the cache stores; relabel the map to small class indices (0 background, 1, 2, ...)"
        )
        return
    values, counts = np.unique(array.astype(np.int64), return_counts=True)
    report.label_counts = {int(v): int(c) for v, c in zip(values, counts)}
    declared = set(info.labels)
    negative = sorted(int(v) for v in values if v < 0)  # int(): numpy 2 would print np.int64(-1)
    undeclared = sorted(set(report.label_counts) - declared) if declared else negative
    if undeclared:
        where = f"dataset.json labels {sorted(declared)}" if declared else "non-negative class indices"
        report.problems.append(
            f"{label.path}: label values {undeclared} are not among the {where}; fix the json or the label map"
        )


def validate_case(entry: dict, info: DatasetInfo) -> CaseReport:
    """Like :func:`inspect_case` but raise :class:`DataError` on the first problem."""
    report = inspect_case(entry, info)
    if report.problems:
        raise DataError(report.problems[0], [report.image, report.label])
    return report


def check_dataset(
    root: str | os.PathLike[str], *, progress: bool = False, allow_outside_paths: bool = False
) -> DatasetReport:
    """Discover and inspect every case of ``root``; never raises for bad data, the report says."""
    try:
        datalist, info = discover_with_info(root, allow_outside_paths=allow_outside_paths)
    except DataError as error:
        return DatasetReport(str(root), None, [], [str(error)])
    iterator = datalist
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(datalist, desc="checking", unit="case")
    cases = [_inspect_safely(entry, info) for entry in iterator]
    return DatasetReport(str(root), info, cases, _class_problems(str(root), info, cases))


def _class_problems(root: str, info: DatasetInfo, cases: list[CaseReport]) -> list[str]:
    """A data set whose label maps all hold background only (and that declares no other class) cannot train a
    segmenter: say so here rather than let training fail on the network's shape."""
    read = [c for c in cases if c.label_counts]
    classes = set(info.labels) | {v for c in read for v in c.label_counts}
    if not read or len(read) < len(cases) or len(classes) >= 2:
        return []
    return [
        f"{root}: no label map holds a class other than {sorted(classes)} and dataset.json declares no other: a "
        "segmenter needs background and at least one structure; check that the label files are the right ones "
        "(the table lists each case's label values)"
    ]


def _inspect_safely(entry: dict, info: DatasetInfo) -> CaseReport:
    """One case's report; whatever goes wrong with it becomes its problem, so the other cases still get theirs."""
    try:
        return inspect_case(entry, info)
    except (ValueError, TypeError, OSError, MemoryError, IndexError, KeyError) as error:
        images = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
        report = CaseReport(entry["case"], ", ".join(map(str, images)), str(entry["label"]))
        report.problems.append(f"{report.image}: cannot inspect this case ({type(error).__name__}: {error})")
        return report


def format_report(report: DatasetReport) -> str:
    """A per-case table, a summary and the list of problems, as plain text."""
    lines = []
    if report.info is not None:
        names = ", ".join(f"{k}={v}" for k, v in report.info.labels.items()) or "undeclared"
        lines.append(
            f"{report.root}: layout {report.info.layout}, {len(report.cases)} cases, "
            f"modality {report.info.modality or '?'}, labels {names}"
        )
    header = f"{'case':<28} {'shape':<18} {'spacing (mm)':<22} {'orient':<6} {'intensity':<22} labels (voxels)"
    lines += [header, "-" * len(header)]
    for case in report.cases:
        labels = " ".join(f"{k}:{v}" for k, v in case.label_counts.items())
        intensity = f"{case.intensity[0]:.4g}..{case.intensity[1]:.4g}"
        flag = "  <-- problem" if case.problems else ""
        shape = "x".join(map(str, case.shape)) + (f" ({case.channels}ch)" if case.channels > 1 else "")
        lines.append(
            f"{case.case:<28} {shape:<18} {_fmt(case.spacing):<22} {case.orientation:<6} {intensity:<22} {labels}{flag}"
        )
    good = [c for c in report.cases if not c.problems]
    if good:
        spacings = np.array([c.spacing for c in good if len(c.spacing) == len(good[0].spacing)])
        lines.append("")
        lines.append(
            f"summary: {len(good)}/{len(report.cases)} cases fine; spacing median {_fmt(tuple(np.median(spacings, 0)))}"
            f" mm (min {_fmt(tuple(spacings.min(0)))}, max {_fmt(tuple(spacings.max(0)))}); "
            f"intensity {min(c.intensity[0] for c in good):.4g}..{max(c.intensity[1] for c in good):.4g}"
        )
    notes = [n for c in report.cases for n in c.notes]
    if notes:
        lines.append(
            f"note: {len(notes)} case(s) have a unit-scale sform and the true spacing in pixdim; e.g. {notes[0]}"
        )
    problems = report.all_problems()
    lines.append("")
    lines.append(f"{len(problems)} problem(s)" + (":" if problems else ": the data set is ready"))
    lines += [f"  - {p}" for p in problems]
    return "\n".join(lines)


def _fmt(values: tuple[float, ...]) -> str:
    return " x ".join(f"{v:.4g}" for v in values)
