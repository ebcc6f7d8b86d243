"""Evaluation outputs besides the summary: the long CSV, report overlays, NIfTI predictions."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from imaseg.data.nifti import write_nifti
from imaseg.evaluation.cells import CLEAN, Cell, attack_case
from imaseg.evaluation.geometry import to_source_grid
from imaseg.metrics.dice import sample_dice
from imaseg.utils.atomic import atomic_path, atomic_write_text
from imaseg.utils.units import budget_psnr

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
    "psnr_db",
    "steps",
    "restarts",
    "seed",
    "dice",
    "hd95",
    "realised_norm",
]


def write_results_csv(path: Path, records: dict, labels: dict[int, str], value_range: float | None = None) -> None:
    """One row per (case, class, attack, eps); ``value_range`` (the clip range's width) gives ``psnr_db``."""
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
                        _num(budget_psnr(case["eps_rms"], value_range)),
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


def _largest_drop_slice(label: np.ndarray, axis: int, clean: np.ndarray, attacked: list[np.ndarray], k: int) -> int:
    """The slice along ``axis`` where the attacks lower the slice Dice most (ties: the most foreground)."""
    import torch

    def per_slice(pred: np.ndarray) -> np.ndarray:
        slices = torch.from_numpy(np.moveaxis(pred, axis, 0).astype(np.int64))
        truth = torch.from_numpy(np.moveaxis(label, axis, 0).astype(np.int64))
        return sample_dice(slices, truth, k).numpy()

    worst = np.min([per_slice(p) for p in attacked], axis=0) if attacked else per_slice(clean)
    drop = per_slice(clean) - worst
    foreground = (np.moveaxis(label, axis, 0) > 0).reshape(label.shape[axis], -1).sum(1)
    order = np.lexsort((-foreground, -np.round(drop, 6)))  # largest drop first, then most foreground
    return int(order[0])


def _cut(volume: np.ndarray, index: int | None, axis: int | None, channel_first: bool = False) -> np.ndarray:
    if axis is None or index is None:  # a 2D image is its own panel
        return volume
    return np.take(volume, index, axis=axis + int(channel_first))


def _overlay_arrays(case, clean, outputs: dict, index: int | None, axis: int | None) -> dict[str, np.ndarray]:
    arrays = {
        "image": _cut(case.image, index, axis, True)[0],
        "label": _cut(case.label, index, axis),
        "clean": _cut(clean.prediction, index, axis),
    }
    for name, (_, output) in outputs.items():
        if output.perturbation is None:  # kept: keep_perturbation=True
            raise RuntimeError(f"{case.case}: {name} returned no perturbation")
        arrays[f"pred__{name}"] = _cut(output.prediction, index, axis)
        arrays[f"delta__{name}"] = _cut(output.perturbation, index, axis, True)[0]
        if output.flip_radius is not None:
            arrays[f"flips__{name}"] = _cut(output.flip_radius, index, axis)
    return arrays


def write_overlays(
    folder: Path, network, store, cases: list[str], cells: list[Cell], settings, device, load_output
) -> None:
    """For each case, the slice where the attacks lower Dice most: image, ground truth, clean prediction, and
    per gradient attack (at the middle budget of its grid) the attacked image, the perturbation, the attacked
    prediction and, where recorded, the per-voxel flip norms. Noise baselines are left out (flat panels).
    2D models are cut along their slice axis, 3D models along the last axis.

    The clean prediction is the one evaluation stored (``load_output(cell, case_id)``). The attacked panels are
    computed again with flip recording: recording flips starts PGD nearer the image (its flip norms are path
    distances), so the scored cells cannot carry flip radii without changing the numbers they report."""
    folder.mkdir(parents=True, exist_ok=True)
    attacks: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.spec is not None and cell.spec.gradient and not cell.spec.ensemble and cell.eps > 0:
            attacks.setdefault(cell.attack, []).append(cell)
    for case_id in cases:
        case = store.load_case(case_id)
        slice_axis = case.meta.slice_axis
        axis = slice_axis if slice_axis is not None else (2 if case.label.ndim == 3 else None)
        clean = load_output(Cell(CLEAN, 0.0), case_id)
        outputs = {}
        for name, grid in attacks.items():
            cell = grid[len(grid) // 2]
            flips = cell.spec is not None and cell.spec.records_flips
            outputs[name] = (
                cell,
                attack_case(network, case, cell, settings, device, keep_perturbation=True, record_flips=flips),
            )
        attacked = [o.prediction for _, o in outputs.values()]
        index = (
            None
            if axis is None
            else _largest_drop_slice(case.label, axis, clean.prediction, attacked, store.num_classes)
        )

        arrays: dict[str, Any] = _overlay_arrays(case, clean, outputs, index, axis)
        meta: dict[str, Any] = {
            "case": case_id,
            "slice": index,
            "axis": axis,
            "attacks": [{"attack": name, "eps": cell.eps} for name, (cell, _) in outputs.items()],
            "labels": {str(k): v for k, v in store.labels.items()},
        }
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
            pred = to_source_grid(values, case.affine, case.source_affine, meta.source_shape, order=0)
            write_nifti(target / f"{case_id}_pred.nii.gz", pred.astype(values.dtype), case.source_affine)
            if output.perturbation is not None and not cell.is_clean:
                scale = meta.intensity_divisor
                delta = to_source_grid(
                    output.perturbation[0] / scale, case.affine, case.source_affine, meta.source_shape, order=1
                )
                write_nifti(target / f"{case_id}_perturbation.nii.gz", delta.astype(np.float32), case.source_affine)
