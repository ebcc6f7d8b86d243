"""Stored evaluation cells: ``cells/KEY.json`` (per-case metrics) and ``cells/KEY.npz`` (predictions, per-sample
Dice and norms, perturbations, and with a post-processing the raw predictions); the JSON is written last and marks the cell done, so a killed evaluation
resumes at the first unfinished cell."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from imaseg.evaluation.cells import CaseOutput, Cell
from imaseg.run import EvalDir
from imaseg.utils.atomic import atomic_path, atomic_write_json

__all__ = ["CellStore"]


class CellStore:
    """The ``cells/`` folder of one evaluation, plus the outputs computed in this process."""

    def __init__(self, out: Path, fingerprint: str) -> None:
        self.evaluation = EvalDir(out)
        self.folder = self.evaluation.cells_dir
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.memory: dict[str, dict[str, CaseOutput]] = {}

    def load(self, cell: Cell, *, hd95: bool, perturbations: bool) -> dict | None:
        """The stored record of ``cell``, or ``None`` when absent, stale or lacking what is asked for."""
        path = self.evaluation.cell_path(cell.key)
        if not path.is_file() or not (self.evaluation.cell_path(cell.key, ".npz")).is_file():
            return None
        record = json.loads(path.read_text())
        if record.get("fingerprint") != self.fingerprint:
            return None
        if (hd95 and not record.get("has_hd95")) or (perturbations and not record.get("has_perturbations")):
            return None  # stored without what this evaluation asks for (HD95, perturbations): compute it again
        record["cases"] = _none_to_nan(record["cases"])  # the JSON file holds NaN (no Dice / HD95) as null
        return record

    def save(self, cell: Cell, record: dict, outputs: dict[str, CaseOutput]) -> None:
        arrays = {f"pred__{cid}": o.prediction for cid, o in outputs.items()}
        arrays.update({f"dice__{cid}": np.asarray(o.sample_dice, dtype=np.float32) for cid, o in outputs.items()})
        arrays.update({f"norm__{cid}": np.asarray(o.norms, dtype=np.float32) for cid, o in outputs.items()})
        arrays.update({f"raw__{cid}": o.raw for cid, o in outputs.items() if o.raw is not None})
        arrays.update(
            {
                f"delta__{cid}": o.perturbation.astype(np.float16)
                for cid, o in outputs.items()
                if o.perturbation is not None
            }
        )
        with atomic_path(self.evaluation.cell_path(cell.key, ".npz")) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]  # numpy stubs: ** meets allow_pickle
        atomic_write_json(self.evaluation.cell_path(cell.key), record)  # written last: marks the cell done
        self.memory[cell.key] = outputs

    def output(self, cell: Cell, case_id: str) -> CaseOutput:
        """One case's output of a finished cell (from memory, else from its ``.npz``)."""
        if cell.key in self.memory and case_id in self.memory[cell.key]:
            return self.memory[cell.key][case_id]
        with np.load(self.evaluation.cell_path(cell.key, ".npz")) as data:
            delta = data[f"delta__{case_id}"].astype(np.float32) if f"delta__{case_id}" in data else None
            raw = data[f"raw__{case_id}"] if f"raw__{case_id}" in data else None
            return CaseOutput(
                data[f"pred__{case_id}"],
                delta,
                data[f"norm__{case_id}"].tolist(),
                data[f"dice__{case_id}"].tolist(),
                raw=raw,
            )


def _none_to_nan(value):
    if value is None:
        return float("nan")
    if isinstance(value, dict):
        return {k: _none_to_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_none_to_nan(v) for v in value]
    return value
