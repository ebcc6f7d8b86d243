"""Evaluation outputs besides the summary: the long CSV, report overlays, NIfTI predictions."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from imaseg.data.nifti import write_nifti
from imaseg.evaluation.cells import Cell, attack_case
from imaseg.evaluation.geometry import to_source_grid
from imaseg.utils.atomic import atomic_path, atomic_write_text

__all__ = ["CSV_COLUMNS", "write_overlays", "write_predictions", "write_results_csv", "write_worst_members_csv"]

CSV_COLUMNS = [
    "case",
    "class",
    "class_name",
    "attack",
    "norm",
    "eps",
    "eps_source",
    "eps_rms",
    "steps",
    "restarts",
    "seed",
    "dice",
    "hd95",
    "realised_norm",
]


def write_results_csv(path: Path, records: dict, labels: dict[int, str]) -> None:
    """One row per (case, class, attack, eps)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for record in records.values():
        spec = Cell(record["attack"], record["eps"]).spec
        steps = record["steps"] if spec is not None and spec.uses_steps else 0
        for case_id, case in record["cases"].items():
            for c, (dice, hd95) in enumerate(zip(case["dice"], case["hd95"]), start=1):
                writer.writerow(
                    [
                        case_id,
                        c,
                        labels.get(c, str(c)),
                        record["attack"],
                        record["norm"],
                        f"{record['eps']:.6g}",
                        f"{case['eps_source']:.6g}",
                        f"{case['eps_rms']:.6g}",
                        steps,
                        record["restarts"],
                        record["seed"],
                        _num(dice),
                        _num(hd95),
                        f"{case['norm_mean']:.6g}",
                    ]
                )
    atomic_write_text(path, buffer.getvalue())


def write_worst_members_csv(path: Path, records: dict) -> None:
    """One row per (ensemble cell, case, sample): the member attack whose prediction the worst case took."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["case", "sample", "attack", "norm", "eps", "member"])
    for record in records.values():
        for case_id, case in record["cases"].items():
            for sample, member in enumerate(case.get("members", [])):
                writer.writerow([case_id, sample, record["attack"], record["norm"], f"{record['eps']:.6g}", member])
    atomic_write_text(path, buffer.getvalue())


def _num(value: float) -> str:
    return "" if value != value else f"{value:.6g}"


def _overlay_slice(label: np.ndarray, slice_axis: int | None) -> int | None:
    if slice_axis is None:
        return None
    areas = (np.moveaxis(label, slice_axis, 0) > 0).reshape(label.shape[slice_axis], -1).sum(1)
    return int(areas.argmax())


def write_overlays(folder: Path, network, store, cases: list[str], cells: list[Cell], settings, device) -> None:
    """For each case: the slice with most foreground (2D) or the middle slice of the volume (3D),
    with image, ground truth, clean prediction, and per attack the attacked prediction and
    perturbation at the middle budget of its grid, plus the flip-radius map of the first L2 PGD."""
    folder.mkdir(parents=True, exist_ok=True)
    attacks: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.spec is not None and not cell.spec.ensemble and cell.eps > 0:
            attacks.setdefault(cell.attack, []).append(cell)
    for case_id in cases:
        case = store.load_case(case_id)
        axis = case.meta["slice_axis"]
        index = _overlay_slice(case.label, axis) if axis is not None else None

        def cut(volume: np.ndarray, channel_first: bool = False, axis=axis, index=index) -> np.ndarray:
            if axis is None:
                if volume.ndim - int(channel_first) == 3:  # 3D volume: middle slice of the last axis
                    return volume[..., volume.shape[-1] // 2]
                return volume
            return np.take(volume, index, axis=axis + int(channel_first))

        arrays = {"image": cut(case.image, True)[0], "label": cut(case.label)}
        clean = attack_case(network, case, Cell("clean", 0.0), settings, device)
        arrays["clean"] = cut(clean.prediction)
        meta: dict[str, Any] = {"case": case_id, "slice": index, "attacks": []}
        for name, grid in attacks.items():
            cell = grid[len(grid) // 2]
            record_flips = cell.spec is not None and cell.spec.records_flips
            output = attack_case(
                network, case, cell, settings, device, keep_perturbation=True, record_flips=record_flips
            )
            flips = output.flip_radius
            if output.perturbation is None:  # kept: keep_perturbation=True
                raise RuntimeError(f"{case_id}: {name} returned no perturbation")
            arrays[f"pred__{name}"] = cut(output.prediction)
            arrays[f"delta__{name}"] = cut(output.perturbation, True)[0]
            if flips is not None:
                arrays[f"flips__{name}"] = cut(flips)
            meta["attacks"].append({"attack": name, "eps": cell.eps})
        arrays["meta"] = np.array(json.dumps(meta))
        with atomic_path(folder / f"{case_id}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)


def write_predictions(folder: Path, store, cases: list[str], cells: list[Cell], load_output) -> None:
    """Clean and attacked predictions (and perturbations) as NIfTI on each case's source grid."""
    for case_id in cases:
        case = store.load_case(case_id)
        meta = case.meta
        for cell in cells:
            output = load_output(cell, case_id)
            target = folder / cell.key
            values = store.to_values(output.prediction.astype(np.uint8))  # class indices -> the data's label values
            pred = to_source_grid(values, case.affine, case.source_affine, meta["source_shape"], order=0)
            write_nifti(target / f"{case_id}_pred.nii.gz", pred.astype(values.dtype), case.source_affine)
            if output.perturbation is not None and not cell.is_clean:
                scale = float(meta.get("intensity_scale", 1.0)) or 1.0
                delta = to_source_grid(
                    output.perturbation[0] / scale, case.affine, case.source_affine, meta["source_shape"], order=1
                )
                write_nifti(target / f"{case_id}_perturbation.nii.gz", delta.astype(np.float32), case.source_affine)
