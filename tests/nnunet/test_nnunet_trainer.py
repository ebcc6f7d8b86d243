"""Robust training inside nnU-Net (imaseg.nnunet.trainer, imaseg.nnunet.training, ``imaseg nnunet``): a tiny data set
planned and preprocessed by nnU-Net, trained with IMA by nnU-Net's own loop, its margins carried by nnU-Net's
checkpoints across a resume, and the trainers found by nnU-Net's trainer search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip(
    "nnunetv2",
    reason='nnunetv2 not installed (pip install "imaseg[nnunet]" && pip install --no-deps nnunetv2==2.8.1 '
    "dynamic-network-architectures==0.4.4; see README, 'nnU-Net')",
)

import tiny_nnunet  # noqa: E402

from imaseg.cli import main  # noqa: E402
from imaseg.config import to_dict  # noqa: E402
from imaseg.nnunet.robust_steps import RobustSettings  # noqa: E402
from imaseg.nnunet.training import SETTINGS_FILE, external_trainer_folder, install_trainers, train_nnunet  # noqa: E402

IMA = RobustSettings.from_mapping(
    {"method": "ima", "ima": {"margin": "sample", "steps": 2, "delta": 0.5, "eps_max": 2.0}}
)
SCHEDULE = {"iterations": 2, "val_iterations": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """The tiny data set planned and preprocessed, and IMA trained on fold 0 for 2 epochs x 2 iterations."""
    work = tmp_path_factory.mktemp("nnunet_train")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("nnUNet_raw", str(work / "raw"))
        env.setenv("nnUNet_preprocessed", str(work / "preprocessed"))
        env.setenv("nnUNet_results", str(work / "unused"))
        env.setenv("nnUNet_def_n_proc", "1")
        env.setenv("nnUNet_n_proc_DA", "1")
        tiny_nnunet.write_tiny_dataset(work / "raw")
        tiny_nnunet.plan_and_preprocess()
        env.setenv("nnUNet_n_proc_DA", "0")
        env.delenv("nnUNet_preprocessed")
        env.delenv("nnUNet_results")
        results = train_nnunet(
            str(tiny_nnunet.DATASET_ID),
            "2d",
            0,
            IMA,
            preprocessed=work / "preprocessed",
            results=work / "results",
            epochs=2,
            **SCHEDULE,
        )
    torch.set_num_threads(threads)
    return {"work": work, "results": results}


def _checkpoint(results: Path) -> dict:
    return torch.load(results / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)


def test_the_results_folder_is_nnunets_and_its_checkpoint_carries_the_margins(folders):
    results = folders["results"]
    assert results.name == "nnUNetTrainerIMA__nnUNetPlans__2d"
    checkpoint = _checkpoint(results)
    state = checkpoint["imaseg"]
    splits = json.loads((folders["work"] / "preprocessed" / tiny_nnunet.DATASET / "splits_final.json").read_text())
    assert state["method"] == "ima" and state["case_ids"] == sorted(splits[0]["train"])
    assert state["state"]["ima.bank.margins"].shape == (len(state["case_ids"]),)
    assert int(state["state"]["ima.bank.epochs"]) == 2  # two margin updates, one per epoch
    margins = json.loads((results / "fold_0" / "imaseg_margins.json").read_text())
    assert [e["epoch"] for e in margins["epochs"]] == [0, 1] and margins["case_ids"] == state["case_ids"]
    assert json.loads((results / SETTINGS_FILE).read_text()) == to_dict(IMA)


def test_the_trained_network_loads_for_scoring(folders):
    from imaseg.nnunet import load_model

    model = load_model(folders["results"], "0", "checkpoint_final.pth")
    assert model.num_classes == 2 and model.trainer_name == "nnUNetTrainerIMA"


def test_resume_restores_the_margins_from_nnunets_checkpoint(folders):
    work = folders["work"]
    before = _checkpoint(folders["results"])["imaseg"]["state"]["ima.bank.margins"]
    train_nnunet(
        str(tiny_nnunet.DATASET_ID), "2d", 0, IMA, preprocessed=work / "preprocessed", results=work / "results",
        epochs=3, resume=True, **SCHEDULE,
    )  # fmt: skip
    after = _checkpoint(folders["results"])
    assert after["current_epoch"] == 3
    assert int(after["imaseg"]["state"]["ima.bank.epochs"]) == 3  # 2 restored + 1, not 1 from a fresh bank
    assert before.shape == after["imaseg"]["state"]["ima.bank.margins"].shape


def test_other_settings_in_the_same_results_folder_are_refused(folders):
    work = folders["work"]
    other = RobustSettings.from_mapping(
        {"method": "ima", "ima": {"margin": "sample", "steps": 2, "delta": 1.0, "eps_max": 2.0}}
    )
    with pytest.raises(ValueError, match="trained with other settings"):
        train_nnunet(
            str(tiny_nnunet.DATASET_ID), "2d", 0, other, preprocessed=work / "preprocessed", results=work / "results",
            epochs=1, **SCHEDULE,
        )  # fmt: skip


def test_nnunets_trainer_search_finds_the_trainers_in_the_external_folder():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    folder = str(external_trainer_folder())
    found = recursive_find_python_class(
        folder, "nnUNetTrainerIMAVoxel", None, base_folder=folder, cleanup_imports_from_base_folder=True
    )
    assert found is not None and issubclass(found, nnUNetTrainer)
    assert found.robust_settings.ima.margin == "voxel"


def test_install_trainers_writes_one_module_into_nnunets_package(tmp_path, monkeypatch):
    import nnunetv2

    (tmp_path / "training" / "nnUNetTrainer").mkdir(parents=True)
    monkeypatch.setattr(nnunetv2, "__path__", [str(tmp_path)])
    path = install_trainers()
    assert path == tmp_path / "training" / "nnUNetTrainer" / "imaseg_trainers.py"
    text = path.read_text()
    assert "from imaseg.nnunet.trainer import *" in text and install_trainers().read_text() == text


def test_the_command_names_the_missing_preprocessing(tmp_path, capsys):
    code = main(
        ["nnunet", "train", "777", "2d", "0", "--preprocessed", str(tmp_path), "--results", str(tmp_path / "r")]
    )
    assert code == 1
    assert "nnUNetv2_plan_and_preprocess -d 777" in capsys.readouterr().err


def test_a_checkpoint_refuses_to_continue_under_other_settings(folders):
    from imaseg.nnunet.trainer import nnUNetTrainerRobust
    from imaseg.nnunet.training import nnunet_paths

    work = folders["work"]
    other = RobustSettings.from_mapping(
        {"method": "ima", "ima": {"margin": "sample", "steps": 2, "delta": 1.0, "eps_max": 2.0}}
    )
    folder = work / "preprocessed" / tiny_nnunet.DATASET
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    plans["continue_training"] = True
    with nnunet_paths(work / "preprocessed", work / "results"):
        trainer_class = type("nnUNetTrainerIMA", (nnUNetTrainerRobust,), {"robust_settings": other})
        trainer = trainer_class(plans, "2d", 0, json.loads((folder / "dataset.json").read_text()), torch.device("cpu"))
        with pytest.raises(ValueError, match="trained with other settings"):
            trainer.load_checkpoint(str(folders["results"] / "fold_0" / "checkpoint_final.pth"))
