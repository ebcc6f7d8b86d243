"""Clinical endpoints, clean and under attack: what a segmentation error does to the numbers a clinician reads.

For every case, the size of each structure: volume in mL for 3D data (voxel count x voxel volume of the
preprocessed grid), area in cm² for 2D images (e.g. lung area on a chest X-ray). For cardiac data (label
names containing "left ventricle", "right ventricle", "myocardium") and patients with two phases, also the
end-diastolic and end-systolic volumes of both ventricles, their ejection fractions (EF, %) and the
myocardial mass (end-diastolic myocardium, 1.05 g/mL); EF is clipped below at -100 % (see
:func:`ejection_fraction`). The end-diastolic phase is the case whose id ends in
``frame01`` or ``_ED`` (ACDC's convention), else the larger left ventricle in the ground truth.

Each endpoint is computed on the ground truth and on the prediction of every cell (clean, each attack and
budget); ``endpoints.csv`` holds one row per (patient or case, endpoint, cell) with the absolute error.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from imaseg.utils.atomic import atomic_write_text

__all__ = [
    "EF_FLOOR",
    "MYOCARDIAL_DENSITY",
    "cardiac_endpoints",
    "ejection_fraction",
    "structure_sizes",
    "write_endpoints_csv",
]

MYOCARDIAL_DENSITY = 1.05  # g/mL
EF_FLOOR = -100.0  # %, see ejection_fraction
_CARDIAC = {"lv": "left ventricle", "rv": "right ventricle", "myo": "myocardium"}


def structure_sizes(classes: np.ndarray, affine: np.ndarray, num_classes: int) -> list[float]:
    """Per foreground class, its volume in mL (3D) or area in cm² (2D).

    >>> labels = np.zeros((10, 10, 2), np.uint8); labels[:5, :4, :] = 1
    >>> structure_sizes(labels, np.diag([2.0, 2.0, 5.0, 1.0]), 2)  # 40 voxels of 20 mm³
    [0.8]
    """
    dims = classes.ndim
    spacing = np.linalg.norm(np.asarray(affine, dtype=float)[:dims, :dims], axis=0)
    unit = float(np.prod(spacing)) / (1000.0 if dims == 3 else 100.0)  # mm³ -> mL, mm² -> cm²
    counts = np.bincount(classes.astype(np.int64).ravel(), minlength=num_classes)
    return [float(c) * unit for c in counts[1:num_classes]]


def _class_indices(labels: Mapping[int, str]) -> dict[str, int] | None:
    found = {}
    for key, name in _CARDIAC.items():
        matches = [i for i, text in labels.items() if name in str(text).lower()]
        if len(matches) != 1:
            return None
        found[key] = matches[0] - 1  # position among the foreground classes
    return found


def _phases(cases: list[str], lv_truth: Mapping[str, float]) -> tuple[str, str] | None:
    if len(cases) != 2:
        return None
    marked = [c for c in cases if c.endswith(("frame01", "_ED"))]
    ed = marked[0] if len(marked) == 1 else max(cases, key=lambda c: lv_truth[c])
    return ed, next(c for c in cases if c != ed)


def cardiac_endpoints(
    sizes: Mapping[str, list[float]],
    patients: Mapping[str, str],
    labels: Mapping[int, str],
    reference: Mapping[str, list[float]] | None = None,
) -> dict[str, dict[str, float]]:
    """Per patient with two phases: LV / RV EDV, ESV (mL), EF (%), and myocardial mass (g); empty when the
    labels are not cardiac. ``sizes``: per case, the structure volumes (mL) of one segmentation;
    ``reference``: the ground truth's, which decides the phases when the ids do not."""
    index = _class_indices(labels)
    if index is None:
        return {}
    by_patient: dict[str, list[str]] = {}
    for case in sizes:
        by_patient.setdefault(patients[case], []).append(case)
    lv_reference = {c: s[index["lv"]] for c, s in (reference or sizes).items()}
    out = {}
    for patient, cases in sorted(by_patient.items()):
        phases = _phases(sorted(cases), lv_reference)
        if phases is None:
            continue
        ed, es = phases
        values = {}
        for ventricle in ("lv", "rv"):
            edv, esv = sizes[ed][index[ventricle]], sizes[es][index[ventricle]]
            values[f"{ventricle}_edv_ml"], values[f"{ventricle}_esv_ml"] = edv, esv
            values[f"{ventricle}_ef_percent"] = ejection_fraction(edv, esv)
        values["myocardial_mass_g"] = MYOCARDIAL_DENSITY * sizes[ed][index["myo"]]
        out[patient] = values
    return out


def ejection_fraction(edv: float, esv: float) -> float:
    """EF in % from the end-diastolic and end-systolic volumes, at least ``EF_FLOOR`` (NaN without an EDV).

    An attack that all but erases the end-diastolic ventricle makes the ratio meaningless (an EF of -8000 %
    was measured on ACDC): one such case would then decide the mean error of every model. Below -100 % (a
    predicted ESV over twice the EDV) the value is clipped; negative values above it are kept, as they
    show phases swapped by the attack.
    """
    if edv <= 0:
        return float("nan")
    return max(100.0 * (edv - esv) / edv, EF_FLOOR)


def write_endpoints_csv(path: Path, rows: list[dict]) -> None:
    """``subject, endpoint, attack, eps, truth, prediction, abs_error`` rows."""
    buffer = io.StringIO()
    columns = ["subject", "endpoint", "attack", "eps", "truth", "prediction", "abs_error"]
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())
