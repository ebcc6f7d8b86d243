"""``imaseg nnunet train``: robust training of one nnU-Net fold, and making imaseg's trainers visible to nnU-Net.

:func:`train_nnunet` runs an :class:`~imaseg.nnunet.trainer.nnUNetTrainerRobust` on a dataset nnU-Net has planned
and preprocessed (``nnUNetv2_plan_and_preprocess``), writing an ordinary nnU-Net results folder
``RESULTS/DatasetXXX/TRAINER__PLANS__CONFIG/fold_F`` (scored by ``imaseg evaluate --nnunet``). The folder's
``imaseg_settings.json`` records what it was trained with; continuing or retraining it with other settings is
refused (give another ``--trainer-name``).

nnU-Net finds a trainer named by ``nnUNetv2_train -tr NAME`` (and ``nnUNetv2_predict`` the trainer of a
checkpoint) only inside its own package or in the folders of the ``nnUNet_extTrainer`` environment variable.
:func:`external_trainer_folder` is such a folder (one module importing :mod:`imaseg.nnunet.trainer`);
:func:`install_trainers` writes that module into nnU-Net's package instead, for installs where the variable
cannot be set or where nnU-Net's own search fails first (a CPU install without timm).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from imaseg.config import to_dict
from imaseg.data.errors import DataError
from imaseg.nnunet.requirement import require_nnunet
from imaseg.nnunet.robust_steps import RobustSettings
from imaseg.utils.atomic import atomic_write_text

__all__ = [
    "SETTINGS_FILE",
    "TRAINER_MODULE",
    "default_trainer_name",
    "external_trainer_folder",
    "install_trainers",
    "nnunet_paths",
    "train_nnunet",
]

logger = logging.getLogger(__name__)

SETTINGS_FILE = "imaseg_settings.json"
TRAINER_MODULE = "imaseg_trainers.py"
_MODULE_TEXT = '"""imaseg\'s robust nnU-Net trainers (written by `imaseg nnunet install-trainers`)."""\n\nfrom imaseg.nnunet.trainer import *  # noqa: F401,F403\n'


def default_trainer_name(settings: RobustSettings) -> str:
    """The class whose defaults match the method: ``nnUNetTrainerPGDAT``, ``nnUNetTrainerIMAVoxel``, ...

    >>> default_trainer_name(RobustSettings(method="trades"))
    'nnUNetTrainerTRADES'
    """
    if settings.method == "ima":
        return "nnUNetTrainerIMAVoxel" if settings.ima.margin == "voxel" else "nnUNetTrainerIMA"
    return {"std": "nnUNetTrainerRobust", "pgd-at": "nnUNetTrainerPGDAT", "trades": "nnUNetTrainerTRADES"}[
        settings.method
    ]


def external_trainer_folder() -> Path:
    """A folder for ``nnUNet_extTrainer``: it holds only ``imaseg_trainers.py``."""
    return Path(__file__).resolve().parent / "external"


def install_trainers() -> Path:
    """Write ``imaseg_trainers.py`` into ``nnunetv2/training/nnUNetTrainer/``; returns its path (idempotent)."""
    require_nnunet()
    import nnunetv2

    target = Path(nnunetv2.__path__[0]) / "training" / "nnUNetTrainer" / TRAINER_MODULE
    if not (target.is_file() and target.read_text() == _MODULE_TEXT):
        atomic_write_text(target, _MODULE_TEXT)
    return target


@contextmanager
def nnunet_paths(preprocessed: Path, results: Path, raw: Path | None = None) -> Iterator[None]:
    """nnU-Net reads its folders from environment variables at each use: set them for the duration only."""
    folders = {"nnUNet_preprocessed": preprocessed, "nnUNet_results": results, "nnUNet_raw": raw}
    saved = {k: os.environ.get(k) for k in folders}
    os.environ.update({k: str(v) for k, v in folders.items() if v is not None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _dataset_folder(preprocessed: Path, dataset: str) -> Path:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        name = maybe_convert_to_dataset_name(int(dataset) if dataset.isdigit() else dataset)
    except RuntimeError as error:
        raise DataError(
            f"{preprocessed}: no preprocessed dataset {dataset}; run nnUNetv2_plan_and_preprocess -d {dataset}",
            [preprocessed],
        ) from error
    folder = preprocessed / name
    if not (folder / "dataset.json").is_file():
        raise DataError(f"{folder}: no dataset.json; run nnUNetv2_plan_and_preprocess -d {dataset} first", [folder])
    return folder


def _check_settings(folder: Path, settings: RobustSettings) -> None:
    """Refuse to continue a results folder trained with other settings; record them in a new one."""
    path, recorded = folder / SETTINGS_FILE, to_dict(settings)
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != recorded:
            raise ValueError(
                f"{path}: this results folder was trained with other settings ({previous}); give another --trainer-name"
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(recorded, indent=1))


def train_nnunet(
    dataset: str,
    configuration: str,
    fold: int | str,
    settings: RobustSettings,
    *,
    preprocessed: str | os.PathLike[str],
    results: str | os.PathLike[str],
    trainer_name: str | None = None,
    plans: str = "nnUNetPlans",
    epochs: int | None = None,
    iterations: int | None = None,
    val_iterations: int | None = None,
    device: str | None = None,
    resume: bool = False,
    validate: bool = True,
) -> Path:
    """Train one fold robustly inside nnU-Net; returns the results folder (``.../TRAINER__PLANS__CONFIG``).

    ``epochs`` / ``iterations`` / ``val_iterations`` replace nnU-Net's 1000 / 250 / 50 (a reduced schedule; a
    checkpoint every twentieth of it, at least every 50 epochs as nnU-Net does); ``resume`` continues from the
    fold's latest checkpoint (with the same settings); ``validate``: nnU-Net's final validation on the fold's
    validation cases (``fold_F/validation``), as ``nnUNetv2_train`` runs it.

    Raises:
        DataError: the dataset is not preprocessed, or the plans lack the configuration.
        ValueError: the results folder was trained with other settings.
        NnUNetMissingError: nnunetv2 is not installed.
    """
    require_nnunet()
    from nnunetv2.run.run_training import maybe_load_checkpoint

    fold = _check_fold(fold)
    for name, value in (("epochs", epochs), ("iterations", iterations), ("val_iterations", val_iterations)):
        if value is not None and int(value) < 1:
            raise ValueError(f"`{name}` must be >= 1, got {value}")

    from imaseg.nnunet.trainer import nnUNetTrainerRobust

    preprocessed, results = Path(preprocessed).resolve(), Path(results).resolve()
    with nnunet_paths(preprocessed, results):
        folder = _dataset_folder(preprocessed, str(dataset))
        plans_file = folder / f"{plans}.json"
        if not plans_file.is_file():
            raise DataError(
                f"{plans_file}: no such plans; run nnUNetv2_plan_and_preprocess or pass --plans", [plans_file]
            )
        plans_data = json.loads(plans_file.read_text())
        if configuration not in plans_data.get("configurations", {}):
            known = ", ".join(plans_data.get("configurations", {}))
            raise DataError(f"{plans_file}: no configuration {configuration!r}; the plans have {known}", [plans_file])
        plans_data["continue_training"] = resume
        name = trainer_name or default_trainer_name(settings)
        trainer_class = type(name, (nnUNetTrainerRobust,), {"robust_settings": settings, "__module__": __name__})
        device_value = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        trainer = trainer_class(
            plans_data, configuration, fold, json.loads((folder / "dataset.json").read_text()), device_value
        )
        for attribute, value in (
            ("num_epochs", epochs),
            ("num_iterations_per_epoch", iterations),
            ("num_val_iterations_per_epoch", val_iterations),
        ):
            if value is not None:
                setattr(trainer, attribute, int(value))
        output = Path(trainer.output_folder_base)
        _check_settings(output, settings)
        logger.info("nnU-Net %s fold %s, %s: %s", configuration, fold, name, settings.describe())
        trainer.save_every = max(1, min(50, trainer.num_epochs // 20))
        maybe_load_checkpoint(trainer, resume, False, None)
        trainer.run_training()
        if validate:
            trainer.perform_actual_validation(False)
    return output


def _check_fold(fold: int | str) -> int | str:
    """``"all"`` or a non-negative integer (nnU-Net's folds).

    >>> _check_fold("2"), _check_fold("all")
    (2, 'all')
    """
    if fold == "all":
        return fold
    try:
        value = int(fold)
    except (TypeError, ValueError):
        raise ValueError(f"`fold` must be an integer (0-4 for nnU-Net's splits) or all, got {fold!r}") from None
    if value < 0:
        raise ValueError(f"`fold` must be >= 0 or all, got {fold!r}")
    return value
