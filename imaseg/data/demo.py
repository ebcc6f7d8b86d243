"""The embedded default data: small synthetic short-axis cardiac cine MRI, written as an MSD folder.

Each "patient" has two phases (end-diastole ``frame01`` and end-systole ``frameNN``), like ACDC. A
volume is a stack of short-axis slices from base to apex: a bright left-ventricle blood pool (label 3)
inside a darker myocardial ring (label 2), a right-ventricle crescent hugging the septum (label 1),
dark lungs either side, a body ellipse, a smooth coil bias field and Rician-like noise. The heart's
position, size and wall thickness vary per patient; the cavities shrink towards the apex and at
systole. It is not real anatomy, but it has ACDC's label layout, class imbalance and scale, so the
whole pipeline (and its attacks) behave as on the real thing, in seconds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from imaseg.data.nifti import write_nifti

__all__ = ["DEMO_LABELS", "make_demo_case", "write_demo_data"]

DEMO_LABELS = {0: "background", 1: "right ventricle", 2: "myocardium", 3: "left ventricle"}


def make_demo_case(rng: np.random.Generator, shape=(96, 96, 8), systole: bool = False, anatomy: dict | None = None):
    """Return ``(image float32 in [0, 1], label uint8)`` of one synthetic phase.

    ``anatomy`` (drawn from ``rng`` when ``None``) fixes the patient: the two phases of one patient
    share it.
    """
    nx, ny, nz = shape
    a = anatomy or _draw_anatomy(rng, shape)
    x, y = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32), indexing="ij")
    image = np.zeros(shape, np.float32)
    label = np.zeros(shape, np.uint8)
    contraction = 0.72 if systole else 1.0
    thicken = 1.35 if systole else 1.0
    for z in range(nz):
        taper = 1.0 - 0.55 * (z / max(nz - 1, 1)) ** 1.5  # base -> apex
        cx, cy = a["cx"] + a["tilt_x"] * z, a["cy"] + a["tilt_y"] * z
        r_lv = a["r_lv"] * taper * contraction
        wall = a["wall"] * thicken * (0.8 + 0.2 * taper)
        d_lv = np.hypot((x - cx) / a["ecc"], (y - cy) * a["ecc"])
        lv = d_lv < r_lv
        myo = (d_lv < r_lv + wall) & ~lv
        rx = cx - (r_lv + wall) * 0.95
        d_rv = np.hypot((x - rx) / 1.35, (y - cy) / (1.0 + 0.25 * taper))
        rv = (d_rv < a["r_rv"] * taper * (0.8 if systole else 1.0)) & ~(d_lv < r_lv + wall + 1.0)
        if z >= nz - 1 - a["apex_without_rv"]:
            rv[:] = False
        body = np.hypot((x - nx / 2) / (0.46 * nx), (y - ny / 2) / (0.40 * ny)) < 1
        lungs = body & (np.hypot((np.abs(x - nx / 2) - 0.24 * nx) / (0.13 * nx), (y - ny * 0.45) / (0.22 * ny)) < 1)
        slice_img = np.where(body, 0.32, 0.02).astype(np.float32)
        slice_img[lungs] = 0.06
        slice_img[myo] = 0.28
        slice_img[rv] = 0.70
        slice_img[lv] = 0.82
        image[..., z] = slice_img
        label[..., z][rv] = 1
        label[..., z][myo] = 2
        label[..., z][lv] = 3
    bias = (
        1
        + 0.25 * np.sin(x / nx * np.pi * a["bias_fx"] + a["bias_phase"])[..., None] * np.cos(y / ny * np.pi)[..., None]
    )
    image = image * bias
    image = _smooth(image) + rng.normal(0, 0.035, shape).astype(np.float32)
    image = np.abs(image)  # magnitude images: Rician-like floor
    return np.clip(image / max(image.max(), 1e-6), 0, 1).astype(np.float32), label


def _draw_anatomy(rng: np.random.Generator, shape) -> dict:
    nx, ny, _ = shape
    return {
        "cx": nx * rng.uniform(0.5, 0.6),
        "cy": ny * rng.uniform(0.45, 0.55),
        "tilt_x": rng.uniform(-0.5, 0.5),
        "tilt_y": rng.uniform(-0.5, 0.5),
        "r_lv": nx * rng.uniform(0.09, 0.13),
        "wall": nx * rng.uniform(0.035, 0.05),
        "ecc": rng.uniform(0.9, 1.12),
        "r_rv": nx * rng.uniform(0.11, 0.15),
        "apex_without_rv": int(rng.integers(0, 2)),
        "bias_fx": rng.uniform(0.5, 1.5),
        "bias_phase": rng.uniform(0, np.pi),
    }


def _smooth(volume: np.ndarray) -> np.ndarray:
    """A light in-plane blur (partial-volume look) without scipy."""
    out = volume.copy()
    for axis in (0, 1):
        out = (np.roll(out, 1, axis) + 2 * out + np.roll(out, -1, axis)) / 4
    return out


def write_demo_data(
    out_dir: str | os.PathLike[str],
    *,
    patients: int = 10,
    shape: tuple[int, int, int] = (96, 96, 8),
    spacing: tuple[float, float, float] = (1.6, 1.6, 8.0),
    seed: int = 0,
) -> Path:
    """Write ``patients`` x 2 phases as an MSD folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``).

    Existing files of the same names are replaced atomically; the result is a pure function of the
    arguments, so rerunning gives the same bytes-for-voxels data.
    """
    if patients < 2:
        raise ValueError(f"`patients` must be >= 2, got {patients}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-shape[0] * spacing[0] / 2, -shape[1] * spacing[1] / 2, 0.0]
    training = []
    for p in range(1, patients + 1):
        anatomy = _draw_anatomy(rng, shape)
        es_frame = int(rng.integers(8, 16))
        for frame, systole in ((1, False), (es_frame, True)):
            case = f"patient{p:03d}_frame{frame:02d}"
            image, label = make_demo_case(rng, shape, systole, anatomy)
            write_nifti(out / "imagesTr" / f"{case}.nii.gz", image, affine)
            write_nifti(out / "labelsTr" / f"{case}.nii.gz", label, affine)
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
    meta = {
        "name": "imaseg demo heart (synthetic)",
        "description": "Synthetic short-axis cine MRI phantoms with ACDC's labels; generated by imaseg demo-data.",
        "reference": "imaseg",
        "licence": "CC0",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {str(k): v for k, v in DEMO_LABELS.items()},
        "numTraining": len(training),
        "numTest": 0,
        "training": training,
        "test": [],
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out
