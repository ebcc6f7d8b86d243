"""``imaseg export RUN --bundle OUT``: a MONAI bundle of a trained run, with its robustness card.

Written::

    OUT/configs/inference.json   what `python -m monai.bundle run --config_file configs/inference.json
                                 --dataset_dir IN --output_dir OUT` runs: dataset, preprocessing (the run's
                                 own chain), network_def, inferer, a SupervisedEvaluator whose handlers load
                                 models/model.pt, and a dict postprocessing that writes CASE.nii.gz label
                                 maps in each input's own geometry with SaveImaged, as `imaseg predict` does
                                 (with postprocess lcc, MONAI's KeepLargestConnectedComponentd first, as
                                 `imaseg predict --postprocess lcc` does)
    OUT/configs/metadata.json    MONAI's metadata (bundle_metadata.py) with, under "imaseg", the
                                 preprocessing record and the robustness card
    OUT/configs/logging.conf     the logging MONAI's runner reads by default
    OUT/models/model.pt          the network's state dict
    OUT/models/model.ts          TorchScript with the metadata and configs embedded, when the network scripts
    OUT/docs/README.md, OUT/LICENSE, OUT/docs/data_license.txt

The configs hold no ``$`` expression: MONAI components plus imaseg's factories
(:mod:`imaseg.prediction.bundle_components`, ``imaseg.transforms.chain.preprocessing_for_record``,
``imaseg.prediction.inputs.find_images``, ``imaseg.networks``), so running the bundle needs imaseg
installed (the README and metadata say so). The robustness card is what the run's evaluation measured
(``RUN/eval/TAG``): the threat model, clean and attacked global Dice per budget with 95% intervals over
patients, the area under the Dice-vs-budget curve, the cases, and the sanity checks that failed.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from imaseg import __version__
from imaseg.cache.manifest import label_values, read_manifest
from imaseg.data.errors import DataError
from imaseg.networks import NetworkConfig
from imaseg.postprocess import COMPONENTS_KEPT, POSTPROCESSORS
from imaseg.prediction.bundle_docs import LOGGING_CONF, bundle_license, bundle_readme, data_info, data_license
from imaseg.prediction.bundle_metadata import DataInfo, bundle_metadata, robustness_card
from imaseg.prediction.bundle_training import train_config
from imaseg.prediction.exported_program import write_exported_program
from imaseg.run_model import RunModel, load_run_model
from imaseg.utils.atomic import atomic_path, atomic_write_json, atomic_write_text
from imaseg.utils.checks import check_choice

__all__ = ["export_bundle", "inference_config", "robustness_card"]

logger = logging.getLogger(__name__)

_COMPONENTS = "imaseg.prediction.bundle_components"
_PACKAGE_FLOORS = {"nibabel": "5.0", "pytorch-ignite": "0.4.11", "fire": "0.4"}
_POSTPROCESS_PACKAGES = {
    name: {"scikit-image": "0.24"} for name in COMPONENTS_KEPT
}  # what MONAI's transform of each needs on the CPU


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
    """The inference ``imaseg predict`` runs: slice by slice for a 2D model on volumes, a Gaussian-blended
    sliding window (imaseg's ``SlidingWindowForward``) for a 3D model, the network alone for 2D images."""
    record, pre = model.preprocessing_record, model.preprocess
    if record.spatial_dims == 3:
        window = model.patch_size or pre.spatial_size
        return {
            "_target_": "SlidingWindowInferer",
            "roi_size": list(window),
            "sw_batch_size": 2,
            "overlap": 0.25,
            "mode": "gaussian",
        }
    if record.source_dims == 3:  # a 2D network on volumes: slice by slice along the slice axis
        return {
            "_target_": "SliceInferer",
            "spatial_dim": pre.slice_axis,
            "roi_size": list(pre.spatial_size),
            "sw_batch_size": 16,
        }
    return {"_target_": "SimpleInferer"}


def _output_dtype(class_values: list[int]) -> str:
    """The dtype ``imaseg predict`` writes label maps in (uint8 for class indices, else the values' own)."""
    if class_values == list(range(len(class_values))):
        return "uint8"
    return str(np.asarray(label_values(np.arange(len(class_values)), class_values)).dtype)


def _postprocess_transforms(model: RunModel, postprocess: str) -> list[dict]:
    """MONAI's transforms for imaseg's post-processor ``postprocess`` (:mod:`imaseg.postprocess`), on the class
    indices: ``lcc`` is ``KeepLargestConnectedComponentd`` per foreground class, as ``imaseg predict`` applies it."""
    if postprocess in COMPONENTS_KEPT:
        return [
            {
                "_target_": "KeepLargestConnectedComponentd",
                "keys": "pred",
                "applied_labels": list(range(1, model.num_classes)),
                "is_onehot": False,
                "independent": True,
                "num_components": COMPONENTS_KEPT[postprocess],
            }
        ]
    return []


def _postprocessing(model: RunModel, postprocess: str = "none") -> dict:
    values = list(model.preprocessing_record.class_values) or list(range(model.num_classes))
    return {
        "_target_": "Compose",
        "transforms": [
            {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
            *_postprocess_transforms(model, postprocess),
            {"_target_": f"{_COMPONENTS}.SourceGridd", "keys": "pred", "class_values": values, "ref_key": "image"},
            {
                "_target_": "SaveImaged",
                "keys": "pred",
                "output_dir": "@output_dir",
                "output_postfix": "",
                "output_ext": ".nii.gz",
                "output_dtype": _output_dtype(values),
                "resample": False,
                "separate_folder": False,
                "print_log": False,
            },
        ],
    }


def _path(name: str) -> dict:
    return {"_target_": f"{_COMPONENTS}.bundle_file", "root": "@bundle_root", "path": name}


def inference_config(model: RunModel, postprocess: str = "none") -> dict:
    """``configs/inference.json``: the spleen_ct_segmentation bundle's keys, with no ``$`` expression; its
    postprocessing applies ``postprocess`` (:mod:`imaseg.postprocess`) to the class indices."""
    postprocess = check_choice("postprocess", postprocess, POSTPROCESSORS)
    return {
        "bundle_root": ".",
        "dataset_dir": _path("data"),
        "output_dir": _path("eval"),
        "device": {"_target_": "imaseg.networks.resolve_device", "name": "auto"},
        "network_def": _network_def(model, model.run.train_settings()),
        "network": {"_target_": f"{_COMPONENTS}.on_device", "network": "@network_def", "device": "@device"},
        "preprocessing_record": model.preprocessing_record.to_json(),
        "preprocessing": {
            "_target_": "imaseg.transforms.chain.preprocessing_for_record",
            "record": "@preprocessing_record",
        },
        "datalist": {"_target_": "imaseg.prediction.inputs.find_images", "path": "@dataset_dir"},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,
            "shuffle": False,
            "num_workers": 0,
        },
        "inferer": _inferer(model),
        "postprocessing": _postprocessing(model, postprocess),
        "checkpoint": _path("models/model.pt"),
        "checkpointloader": {
            "_target_": "CheckpointLoader",
            "load_path": "@checkpoint",
            "load_dict": {"model": "@network"},
            "map_location": "@device",
        },
        "handlers": ["@checkpointloader", {"_target_": "StatsHandler", "iteration_log": False}],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": "@handlers",
            "amp": False,
        },
        "initialize": [{"_target_": "monai.utils.set_determinism", "seed": 0}],
        "run": [{"_target_": "monai.engines.SupervisedEvaluator.run", "self": "@evaluator"}],
    }


def _packages(postprocess: str = "none") -> dict[str, str]:
    """The packages the bundle needs besides MONAI, torch and NumPy: the installed versions (else the floors)."""
    packages = {"imaseg": __version__}
    for name, floor in {**_PACKAGE_FLOORS, **_POSTPROCESS_PACKAGES.get(postprocess, {})}.items():
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = floor
    return packages


def _training_data(model: RunModel) -> DataInfo:
    """The training data's own declaration (through the run's cache manifest), when still reachable."""
    name = model.preprocessing_record.dataset.name if model.preprocessing_record.dataset else ""
    cache = model.run.cache_hint()
    try:
        data_dir = read_manifest(cache).data_dir if cache else None
    except DataError:
        data_dir = None
    return data_info(data_dir, name)


def _write_torchscript(model: RunModel, path: Path, metadata: dict, files: dict[str, str]) -> None:
    from monai.data import save_net_with_metadata

    try:
        scripted = torch.jit.script(model.network)
    except Exception as error:  # noqa: BLE001 - scripting is best effort: the state dict is the bundle's weights
        logger.warning("no models/model.ts: the network does not script (%s)", str(error).splitlines()[0])
        return
    buffer = io.BytesIO()
    extra = {name: text.encode("utf-8") for name, text in files.items()}
    save_net_with_metadata(scripted, buffer, include_config_vals=False, meta_values=metadata, more_extra_files=extra)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _bundle_postprocess(card: dict, tag: str, asked: str | None) -> str:
    """The post-processing the bundle applies: ``asked``, else the card's evaluation's; a mismatch is warned."""
    measured = str(card.get("postprocess", "none"))
    chosen = check_choice("postprocess", asked if asked is not None else measured, POSTPROCESSORS)
    if card.get("evaluated") and chosen != measured:
        message = "the bundle post-processes with %s but the robustness card (evaluation %r) was measured with %s"
        logger.warning(
            message + "; export with --tag of an evaluation with --postprocess %s", chosen, tag, measured, chosen
        )
    return chosen


def export_bundle(
    run_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    checkpoint: str = "last",
    tag: str = "default",
    data_license_text: str | None = None,
    postprocess: str | None = None,
) -> Path:
    """Write the run as a MONAI bundle into ``out_dir`` (see the module docstring); returns ``out_dir``.

    Args:
        run_dir: a run folder written by ``imaseg train``.
        out_dir: the bundle folder.
        checkpoint: ``last``, ``best`` or a checkpoint path.
        tag: the evaluation whose numbers form the card.
        data_license_text: the training data's licence (text or a file); default: what their
            ``dataset.json`` declares.
        postprocess: the bundle's post-processing of the class indices (``none``, ``lcc``); default: the one
            the card's evaluation scored with, so that the card describes what the bundle does.

    Raises:
        DataError: a run without its preprocessing, or an unreadable checkpoint.
    """
    out = Path(out_dir)
    model = load_run_model(run_dir, checkpoint)
    card = robustness_card(run_dir, tag)
    postprocess = _bundle_postprocess(card, tag, postprocess)
    data, packages = _training_data(model), _packages(postprocess)
    depth = len(NetworkConfig.from_mapping(model.run.train_settings()).channels)
    metadata = bundle_metadata(model, card, data, packages, depth)
    inference = inference_config(model, postprocess)
    atomic_write_json(out / "configs" / "inference.json", inference)
    atomic_write_json(out / "configs" / "metadata.json", metadata)
    training = train_config(model)  # None for a fine-tuned run: its recipe starts from a checkpoint not in the bundle
    if training is not None:
        atomic_write_json(out / "configs" / "train.json", training)
    atomic_write_text(out / "configs" / "logging.conf", LOGGING_CONF)
    atomic_write_text(out / "docs" / "README.md", bundle_readme(metadata, packages, trainable=training is not None))
    atomic_write_text(out / "docs" / "data_license.txt", data_license(data, data_license_text))
    atomic_write_text(out / "LICENSE", bundle_license(data))
    (out / "models").mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "models" / "model.pt") as tmp:
        torch.save(model.network.state_dict(), tmp)
    _write_torchscript(model, out / "models" / "model.ts", metadata, {"inference.json": json.dumps(inference)})
    shape = metadata["network_data_format"]["inputs"]["image"]
    write_exported_program(
        model.network, (shape["num_channels"], *shape["spatial_shape"]), out / "models" / "model.pt2"
    )
    logger.info("wrote the MONAI bundle %s", out)
    return out
