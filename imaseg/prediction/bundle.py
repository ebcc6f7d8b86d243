"""``imaseg export RUN --bundle OUT``: a MONAI bundle of a trained run, with its robustness card.

Written::

    OUT/configs/inference.json   network_def (MONAI's UNet; other networks through
                                 imaseg.networks.build_network), preprocessing (the run's own chain, rebuilt
                                 by imaseg.transforms.chain.preprocessing_for_record), inferer (slice-wise
                                 for 2D models on volumes, sliding window for 3D), postprocessing (argmax)
    OUT/configs/metadata.json    MONAI's metadata (versions, input / output format, labels) and, under
                                 "imaseg", the preprocessing record and the robustness card
    OUT/models/model.pt          the network's state dict
    OUT/models/model.ts          TorchScript, when the network scripts

The robustness card is what the run's evaluation measured (``RUN/eval/TAG/summary.json``): the threat
model, clean and attacked global Dice per budget with 95% intervals over patients, the area under the
Dice-vs-budget curve, the evaluated cases and patients, and the sanity checks that failed. A run without an
evaluation gets a card that says so. ``monai.bundle.ConfigParser`` loads the bundle; so does
``imaseg evaluate --model OUT``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import monai
import numpy as np
import torch

from imaseg import __version__
from imaseg.networks import NetworkConfig
from imaseg.run import RunDir
from imaseg.run_model import RunModel, load_run_model
from imaseg.summary import AttackCurve
from imaseg.utils.atomic import atomic_path, atomic_write_json

__all__ = ["export_bundle", "robustness_card"]

logger = logging.getLogger(__name__)


def robustness_card(run_dir: str | os.PathLike[str], tag: str = "default") -> dict:
    """The evaluation's headline numbers in a few fields (``{"evaluated": False}`` without one); the failed
    checks are the summary's own (:meth:`imaseg.summary.Summary.failed_checks`, as ``evaluate --strict``)."""
    evaluation = RunDir(run_dir).evaluation(tag)
    if not evaluation.has_summary():
        return {
            "evaluated": False,
            "note": f"no evaluation in {evaluation.summary_path}; run `imaseg evaluate --run RUN` before exporting",
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
        "clean_dice": summary.clean_global,
        "clean_ci": summary.clean.ci_global,
        "robust_dice": {f"{e:g}": {"dice": c.global_dice, "ci": c.ci_global} for e, c in zip(curve.eps, curve.cells)},
        "auc": curve.auc,
        "cases": len(summary.facts.cases),
        "patients": summary.facts.patients,
        "dataset": summary.facts.dataset,
        "failed_checks": summary.failed_checks(),
    }


def _network_def(model: RunModel, train: dict) -> dict:
    """MONAI's UNet as a pure MONAI target; every other network through imaseg's builder (the bundle's
    preprocessing needs imaseg already), with the arguments training built it with."""
    network = NetworkConfig.from_mapping(train)
    shape = {
        "spatial_dims": model.preprocessing_record.spatial_dims,
        "in_channels": model.preprocessing_record.in_channels,
        "out_channels": model.num_classes,
    }
    if network.name.lower() == "unet":
        return {
            "_target_": "monai.networks.nets.UNet",
            **shape,
            "channels": list(network.channels),
            "strides": [2] * (len(network.channels) - 1),
            "num_res_units": network.res_units,
            "norm": "instance",
            "dropout": network.dropout,
        }
    arguments = {k: list(v) if isinstance(v, tuple) else v for k, v in network.build_arguments().items()}
    return {"_target_": "imaseg.networks.build_network", "name": network.name, **shape, **arguments}


def _inferer(model: RunModel) -> dict:
    record, pre = model.preprocessing_record, model.preprocess
    if record.spatial_dims == 3:
        window = model.patch_size or pre.spatial_size
        return {"_target_": "SlidingWindowInferer", "roi_size": list(window), "sw_batch_size": 2, "overlap": 0.25}
    if record.source_dims == 3:  # a 2D network on volumes: slice by slice along the slice axis
        return {
            "_target_": "SliceInferer",
            "spatial_dim": pre.slice_axis,
            "roi_size": list(pre.spatial_size),
            "sw_batch_size": 16,
        }
    return {"_target_": "SimpleInferer"}


def _metadata(model: RunModel, card: dict) -> dict:
    names = model.names
    clip = model.clip_range
    return {
        "schema": "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json",
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by imaseg {__version__} from {model.run_dir.name}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"imaseg": __version__},
        "task": f"segmentation of {', '.join(names.get(i, f'class {i}') for i in range(1, model.num_classes))}",
        "description": "A segmentation network trained by imaseg; its robustness card is under imaseg.robustness_card",
        "authors": "imaseg export",
        "copyright": "see the training data's licence",
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": model.preprocessing_record.modality,
                    "num_channels": model.preprocessing_record.in_channels,
                    "spatial_shape": list(model.preprocess.spatial_size),
                    "dtype": "float32",
                    "value_range": list(clip) if clip else [],
                    "is_patch_data": bool(model.patch_size),
                    "channel_def": {"0": "image"},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "segmentation",
                    "num_channels": model.num_classes,
                    "spatial_shape": list(model.preprocess.spatial_size),
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": False,
                    "channel_def": {str(i): names.get(i, f"class {i}") for i in range(model.num_classes)},
                }
            },
        },
        "imaseg": {
            "preprocessing": model.preprocessing_record.to_json(),
            "robustness_card": card,
            "run": str(model.run_dir.resolve()),
        },
    }


def export_bundle(
    run_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, checkpoint: str = "last", tag: str = "default"
) -> Path:
    """Write the run as a MONAI bundle into ``out_dir`` (see the module docstring); returns ``out_dir``.

    Raises:
        DataError: a run without its preprocessing, or an unreadable checkpoint.
    """

    run, out = Path(run_dir), Path(out_dir)
    model = load_run_model(run, checkpoint)
    inference = {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": _network_def(model, model.run.train_settings()),
        "network": "$@network_def.to(@device)",
        "preprocessing_record": model.preprocessing_record.to_json(),
        "preprocessing": {
            "_target_": "imaseg.transforms.chain.preprocessing_for_record",
            "record": "@preprocessing_record",
        },
        "inferer": _inferer(model),
        "postprocessing": {"_target_": "AsDiscrete", "argmax": True},
    }
    atomic_write_json(out / "configs" / "inference.json", inference)
    atomic_write_json(out / "configs" / "metadata.json", _metadata(model, robustness_card(run, tag)))
    (out / "models").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "models" / "model.pt") as tmp:
        torch.save(model.network.state_dict(), tmp)
    try:
        scripted = torch.jit.script(model.network)
    except Exception as error:  # noqa: BLE001 - scripting is best effort: the state dict is the bundle's weights
        logger.warning("no models/model.ts: the network does not script (%s)", str(error).splitlines()[0])
    else:
        with atomic_path(out / "models" / "model.ts") as tmp:
            torch.jit.save(scripted, str(tmp))
    logger.info("wrote the MONAI bundle %s", out)
    return out
