"""``configs/metadata.json`` of an exported bundle: MONAI's metadata, coded as MONAI reads it, with the run's
robustness card.

MONAI's bundle specification asks for the versions, ``optional_packages_version``, the task, authors,
copyright and ``network_data_format`` (tensor format of the input and output); ``name``,
``intended_use``, ``references``, ``data_source`` and ``eval_metrics`` are optional and written too.
``eval_metrics`` mirrors the card's headline (clean and attacked global Dice, the Dice-vs-budget area) as
flat numbers that MONAI's tools list; the card itself, with its intervals and threat model, stays under
``imaseg.robustness_card``. Modalities are DICOM codes (``MR``, ``CT``, ``DX``). No absolute path is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import monai
import numpy as np
import torch

from imaseg import __version__
from imaseg.run import RunDir
from imaseg.run_model import RunModel
from imaseg.summary import AttackCurve

__all__ = ["DataInfo", "bundle_metadata", "eval_metrics", "monai_modality", "robustness_card"]

SCHEMA = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json"
IMA_REFERENCE = (
    "Ma L., Liang L. Increasing-Margin Adversarial (IMA) training to improve adversarial robustness of neural "
    "networks. Computer Methods and Programs in Biomedicine, 2023. arXiv:2005.09147"
)
INSTALL_NOTE = (
    "imaseg is not on a package index: install it from its source (pip install 'imaseg @ git+URL-of-its-"
    "repository', or pip install -e . in a checkout) with the version above. The bundle's preprocessing "
    "(imaseg.transforms.chain.preprocessing_for_record) and its mapping back to each input's grid "
    "(imaseg.prediction.bundle_components) need it; the network and weights alone do not."
)
_MODALITIES = {"mri": "MR", "ct": "CT", "xray": "DX"}


@dataclass(frozen=True)
class DataInfo:
    """What the training data declared of themselves (``dataset.json``): name, reference and licence."""

    name: str = ""
    reference: str = ""
    licence: str = ""
    description: str = ""


def monai_modality(modality: str) -> str:
    """imaseg's modality -> the DICOM code MONAI's metadata uses (``"n/a"`` when unknown).

    >>> monai_modality("mri"), monai_modality("xray"), monai_modality("other")
    ('MR', 'DX', 'n/a')
    """
    return _MODALITIES.get(modality, "n/a")


def robustness_card(run_dir: str | os.PathLike[str], tag: str = "default") -> dict:
    """The evaluation's headline numbers in a few fields (``{"evaluated": False}`` without one); the failed
    checks are the summary's own (:meth:`imaseg.summary.Summary.failed_checks`, as ``evaluate --strict``)."""
    evaluation = RunDir(run_dir).evaluation(tag)
    if not evaluation.has_summary():
        return {
            "evaluated": False,
            "note": f"no evaluation {tag!r} in the run; run `imaseg evaluate --run RUN` before exporting",
        }
    summary = evaluation.read_summary()
    main = summary.main_attack
    curve = summary.curve(main) if main is not None else AttackCurve(norm="", eps=[])
    settings = summary.settings
    return {
        "evaluated": True,
        "attack": main,
        "attack_description": summary.facts.attack_descriptions.get(main or "", main),
        "threat_model": {
            "white_box": True,
            "norm": curve.norm or None,
            "eps_unit": settings.eps_unit,
            "steps": settings.steps,
            "restarts": settings.restarts,
            "clip_range": settings.clip_range,
        },
        "metric": "global voxel Dice, mean over foreground classes; 95% bootstrap intervals over patients",
        "postprocess": settings.postprocess,  # applied to every prediction before it was scored (none: raw argmax)
        "clean_dice": summary.clean_global,
        "clean_ci": summary.clean.ci_global,
        "robust_dice": {f"{e:g}": {"dice": c.global_dice, "ci": c.ci_global} for e, c in zip(curve.eps, curve.cells)},
        "auc": curve.auc,
        "cases": len(summary.facts.cases),
        "patients": summary.facts.patients,
        "dataset": summary.facts.dataset,
        "failed_checks": summary.failed_checks(),
    }


def eval_metrics(card: dict) -> dict[str, float]:
    """The card's headline as MONAI's flat ``eval_metrics`` (empty for a run without an evaluation).

    >>> card = {"evaluated": True, "attack": "worst-l2", "clean_dice": 0.9, "auc": 0.7,
    ...         "robust_dice": {"0": {"dice": 0.9}, "0.5": {"dice": 0.6}}}
    >>> eval_metrics(card)
    {'mean_dice': 0.9, 'mean_dice_worst-l2_eps0.5': 0.6, 'dice_auc_worst-l2': 0.7}
    """
    if not card.get("evaluated"):
        return {}
    metrics = {"mean_dice": float(card["clean_dice"])}
    attack = card.get("attack")
    for eps, cell in card.get("robust_dice", {}).items():
        if float(eps) > 0:
            metrics[f"mean_dice_{attack}_eps{eps}"] = float(cell["dice"])
    auc = card.get("auc")
    if auc is not None and np.isfinite(auc):
        metrics[f"dice_auc_{attack}"] = float(auc)
    return metrics


def _spatial_shape(model: RunModel, channels: int) -> tuple[list[Any], bool]:
    """The network's input shape and whether it is a patch: the training patch, the fitted size, or (no
    fixed size) MONAI's ``"k*n"`` pattern for the network's downsampling factor."""
    if model.patch_size:
        return list(model.patch_size), True
    size = list(model.preprocess.spatial_size)
    if len(size) == model.preprocessing_record.spatial_dims:
        return size, False
    factor = 2 ** max(channels - 1, 0)
    return [f"{factor}*n"] * model.preprocessing_record.spatial_dims, False


def _tensor(kind: str, fmt: str, channels: int, shape: list, patch: bool, value_range: list, names: dict) -> dict:
    return {
        "type": kind,
        "format": fmt,
        "num_channels": channels,
        "spatial_shape": shape,
        "dtype": "float32",
        "value_range": value_range,
        "is_patch_data": patch,
        "channel_def": names,
    }


def bundle_metadata(model: RunModel, card: dict, data: DataInfo, packages: dict[str, str], depth: int) -> dict:
    """MONAI's ``metadata.json`` of the run's bundle; ``depth`` is the number of the network's resolution
    levels (its ``channels``), ``packages`` the packages the bundle needs with their versions."""
    record, names, num_classes = model.preprocessing_record, model.names, model.num_classes
    modality = monai_modality(record.modality)
    classes = {str(i): names.get(i, f"class {i}") for i in range(num_classes)}
    structures = ", ".join(classes[str(i)] for i in range(1, num_classes))
    dataset = data.name or (record.dataset.name if record.dataset else "") or "the run's training data"
    shape, patch = _spatial_shape(model, depth)
    clip = list(model.clip_range) if model.clip_range else []
    inputs = {str(c): f"image channel {c}" for c in range(record.in_channels)}
    method = model.method
    return {
        "schema": SCHEMA,
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by imaseg {__version__} from run {model.run_dir.name}, epoch {model.epoch}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "optional_packages_version": dict(packages),
        "required_packages_version": dict(packages),  # MONAI >= 1.4's name for the same field
        "required_packages_note": INSTALL_NOTE,
        "name": f"{dataset} segmentation ({method}, imaseg)",
        "task": f"{record.spatial_dims}D segmentation of {structures} ({modality})",
        "description": (
            f"A {record.spatial_dims}D network trained by imaseg with the {method!r} method on {dataset}; "
            "the input is preprocessed as its training data were and the label maps are written in each "
            "input's own geometry. Its robustness to adversarial noise, as measured, is under "
            "imaseg.robustness_card and eval_metrics."
        ),
        "authors": f"the trainer of run {model.run_dir.name} (exported with imaseg {__version__})",
        "copyright": f"Copyright (c) the trainer of run {model.run_dir.name}; see LICENSE and docs/data_license.txt",
        "intended_use": (
            "Research only, not for diagnostic use. Robustness holds for the threat model on the card only "
            "(white-box attacks of the stated norm, budgets and steps); it is no guarantee."
        ),
        "data_source": "; ".join(v for v in (dataset, data.reference) if v),
        "data_type": "nibabel",
        "image_classes": f"{record.in_channels} channel(s) of {modality} data, preprocessed as imaseg.preprocessing",
        "label_classes": "single channel label map: " + ", ".join(f"{k} is {v}" for k, v in classes.items()),
        "pred_classes": f"{num_classes} channels of logits (argmax is the class): "
        + ", ".join(f"{k} {v}" for k, v in classes.items()),
        "eval_metrics": eval_metrics(card),
        "references": [IMA_REFERENCE, *([data.reference] if data.reference else [])],
        "network_data_format": {
            "inputs": {
                "image": {
                    **_tensor(
                        "image",
                        "hounsfield" if modality == "CT" else "magnitude",
                        record.in_channels,
                        shape,
                        patch,
                        clip,
                        inputs,
                    ),
                    "modality": modality,
                }
            },
            "outputs": {"pred": _tensor("image", "labels", num_classes, shape, patch, [], classes)},
        },
        "imaseg": {
            "preprocessing": record.to_json(),
            "robustness_card": card,
            "run": model.run_dir.name,
            "method": method,
            "epoch": model.epoch,
        },
    }
