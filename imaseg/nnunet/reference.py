"""Check an nnU-Net evaluation against nnU-Net's own predictor, in source geometry, before trusting attacks.

After ``imaseg evaluate --nnunet``, :func:`check_against_nnunet` runs nnU-Net's ``nnUNetPredictor`` (its
float16 sliding window, the run's mirroring) on every evaluated case and writes ``RUN/eval/TAG/``:

- ``nnunet/reference/CASE.nii.gz``: nnU-Net's prediction exported by nnU-Net into the source geometry,
  the file ``nnUNetv2_predict`` writes;
- ``nnunet/predictions/CELL/CASE.nii.gz`` (with ``save_predictions``): every clean and attacked
  prediction exported the same way (one-hot through nnU-Net's export);
- ``nnunet.json``: the model, the normalisation per channel and case, the budgets in source intensity
  units (``eps * source_per_unit``), and per case the voxel agreement of imaseg's clean prediction (the
  float32 window) with nnU-Net's, the Dice of both in the preprocessed space and nnU-Net's Dice in source
  geometry against the label file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from imaseg.cache.reader import CaseStore
from imaseg.config import load_yaml
from imaseg.evaluation.cells import CLEAN, Cell
from imaseg.evaluation.config import EvalConfig
from imaseg.nnunet.cache import case_properties
from imaseg.nnunet.export import classes_to_source, logits_to_source, read_source_label, reference_logits
from imaseg.nnunet.model import NnUNetModel
from imaseg.nnunet.run import load_model_for_run, nnunet_settings
from imaseg.run import EvalDir, RunDir
from imaseg.utils.atomic import atomic_write_json

__all__ = ["AGREEMENT_THRESHOLD", "check_against_nnunet", "dice_counts"]

logger = logging.getLogger(__name__)

AGREEMENT_THRESHOLD = 0.999  # voxel agreement below this: imaseg's window does not reproduce nnU-Net's


def dice_counts(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K - 1, 3)`` true positives, false positives, false negatives per foreground class.

    >>> dice_counts(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
    [[1, 1, 0]]
    """
    p, t = np.asarray(prediction).ravel(), np.asarray(truth).ravel()
    return np.array(
        [
            [np.sum((p == c) & (t == c)), np.sum((p == c) & (t != c)), np.sum((p != c) & (t == c))]
            for c in range(1, num_classes)
        ]
    )


def _dice(counts: np.ndarray) -> list[float | None]:
    """Dice per class from counts; ``None`` where neither prediction nor truth has the class."""
    out: list[float | None] = []
    for tp, fp, fn in np.asarray(counts, dtype=np.float64):
        out.append(None if tp + fp + fn == 0 else float(2 * tp / (2 * tp + fp + fn)))
    return out


def _clean_prediction(evaluation: EvalDir, case_id: str) -> np.ndarray:
    with np.load(evaluation.cell_path(Cell(CLEAN, 0.0).key, ".npz")) as data:
        key = f"raw__{case_id}" if f"raw__{case_id}" in data.files else f"pred__{case_id}"
        return data[key]


def _export_cells(
    model: NnUNetModel, evaluation: EvalDir, store: CaseStore, cases: list[str], fingerprint: str
) -> None:
    """Every current cell's predictions in source geometry through nnU-Net's export."""
    from imaseg.nnunet.export import write_segmentation

    for record_path in sorted(evaluation.cells_dir.glob("*.json")):
        if json.loads(record_path.read_text()).get("fingerprint") != fingerprint:
            continue
        with np.load(record_path.with_suffix(".npz")) as data:
            for cid in cases:
                properties, _ = case_properties(store.root, store.case_meta(cid))
                seg = classes_to_source(model, data[f"pred__{cid}"], properties)
                write_segmentation(
                    model, seg, properties, evaluation.path / "nnunet" / "predictions" / record_path.stem / cid
                )


def _budgets(eps: list[float], scales: dict[str, list[float | None]]) -> dict[str, Any]:
    """Each budget in source intensity units per channel, over the cases: ``eps * source_per_unit``."""
    out: dict[str, Any] = {}
    channels = max((len(v) for v in scales.values()), default=0)
    for e in eps:
        per_channel = []
        for c in range(channels):
            values: list[float] = [float(v) for s in scales.values() if c < len(s) and (v := s[c]) is not None]
            per_channel.append(
                {"min": float(e * min(values)), "median": float(e * np.median(values)), "max": float(e * max(values))}
                if values
                else None
            )
        out[f"{e:g}"] = per_channel
    return out


def _case_check(model: NnUNetModel, store: CaseStore, evaluation: EvalDir, cid: str, tta: bool) -> dict[str, Any]:
    from imaseg.nnunet.export import write_segmentation

    case = store.load_case(cid)
    properties, normalization = case_properties(store.root, case.meta)
    logits = reference_logits(model, case.image, tta=tta)
    reference = logits.argmax(0).numpy()
    ours = _clean_prediction(evaluation, cid)
    seg = logits_to_source(model, logits, properties)
    written = write_segmentation(model, seg, properties, evaluation.path / "nnunet" / "reference" / cid)
    k = model.num_classes
    return {
        "agreement": float(np.mean(ours == reference)),
        "counts_imaseg": dice_counts(ours, case.label, k),
        "counts_nnunet": dice_counts(reference, case.label, k),
        "counts_source": dice_counts(seg, read_source_label(model, case.meta.label), k),
        "normalization": normalization,
        "file": str(written),
    }


def check_against_nnunet(
    run_dir: str | os.PathLike[str], config: EvalConfig, cache: str | os.PathLike[str]
) -> dict[str, Any]:
    """Compare the evaluation ``config.tag`` of an nnU-Net run with nnU-Net's own predictor; write
    ``nnunet.json`` and the masks (see the module docstring); returns the record.

    Raises:
        ValueError: ``run_dir`` scores no nnU-Net model.
    """
    settings = nnunet_settings(run_dir)
    if settings is None:
        raise ValueError(f"{run_dir}: not a run of an nnU-Net model (no train.nnunet in its config.yaml)")
    model = load_model_for_run(settings, config.checkpoint)
    evaluation = RunDir(run_dir).evaluation(config.tag)
    saved = load_yaml(evaluation.settings_path)
    cases = [str(c) for c in saved["cases"]]
    store = CaseStore(cache)
    checks = {cid: _case_check(model, store, evaluation, cid, bool(settings["tta"])) for cid in cases}
    if config.save_predictions:
        _export_cells(model, evaluation, store, cases, str(saved["fingerprint"]))
    total = {key: sum(c[key] for c in checks.values()) for key in ("counts_imaseg", "counts_nnunet", "counts_source")}
    agreement = float(np.mean([c["agreement"] for c in checks.values()]))
    scales = {cid: [n["source_per_unit"] for n in c["normalization"]] for cid, c in checks.items()}
    record = {
        "model": {**settings, "trainer": model.trainer_name, "configuration": model.configuration},
        "mirror_axes": list(model.mirror_axes or []) if settings["tta"] else [],
        "patch_size": list(model.patch_size),
        "normalization": {cid: c["normalization"] for cid, c in checks.items()},
        "eps_source": _budgets(list(config.eps), scales),
        "agreement": agreement,
        "matches_nnunet": agreement >= AGREEMENT_THRESHOLD,
        "global_dice": {
            "imaseg_clean": _dice(total["counts_imaseg"]),
            "nnunet_preprocessed": _dice(total["counts_nnunet"]),
            "nnunet_source": _dice(total["counts_source"]),
        },
        "cases": {
            cid: {
                "agreement": c["agreement"],
                "dice_imaseg_clean": _dice(c["counts_imaseg"]),
                "dice_nnunet_preprocessed": _dice(c["counts_nnunet"]),
                "dice_nnunet_source": _dice(c["counts_source"]),
                "reference_file": c["file"],
            }
            for cid, c in checks.items()
        },
    }
    atomic_write_json(evaluation.path / "nnunet.json", record)
    _log(record, Path(evaluation.path))
    return record


def _log(record: dict[str, Any], folder: Path) -> None:
    schemes = {n["scheme"] for case in record["normalization"].values() for n in case}
    logger.info(
        "nnU-Net reference: imaseg's clean prediction agrees with nnU-Net's predictor on %.4f of voxels; global "
        "Dice imaseg %s, nnU-Net %s (preprocessed grid), nnU-Net in source geometry %s (%s)",
        record["agreement"],
        record["global_dice"]["imaseg_clean"],
        record["global_dice"]["nnunet_preprocessed"],
        record["global_dice"]["nnunet_source"],
        folder / "nnunet.json",
    )
    for eps, channels in record["eps_source"].items():
        if channels and channels[0]:
            logger.info(
                "budget %s (preprocessed units, %s) = %.4g .. %.4g source intensity units (channel 0, over cases)",
                eps,
                ", ".join(sorted(schemes)),
                channels[0]["min"],
                channels[0]["max"],
            )
    if not record["matches_nnunet"]:
        logger.warning(
            "imaseg's forward agrees with nnU-Net's predictor on only %.4f of voxels (< %g): do not trust the attack "
            "numbers before finding out why",
            record["agreement"],
            AGREEMENT_THRESHOLD,
        )
