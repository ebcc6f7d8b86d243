"""Scoring a trained nnU-Net v2 model: a tiny data set planned, preprocessed and trained by nnU-Net in the test,
then loaded from its results folder, compared with nnU-Net's own predictor and attacked (imaseg.nnunet)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip(
    "nnunetv2",
    reason='nnunetv2 not installed (pip install "imaseg[nnunet]" && pip install --no-deps nnunetv2==2.8.1 '
    "dynamic-network-architectures==0.4.4; see README, 'nnU-Net')",
)

import tiny_nnunet  # noqa: E402  (after the skip: it builds nnU-Net trainers)

from imaseg.cli import main  # noqa: E402
from imaseg.data.errors import DataError  # noqa: E402
from imaseg.run import RunDir  # noqa: E402

FLAGS = ["--attacks", "pgd-l2", "--eps", "0,2", "--steps", "3", "--no-hd95", "--no-steps-check", "--overlays", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """nnU-Net's raw data, results folder (fold 0, 2 epochs x 3 iterations) and a labelled held-out folder."""
    work = tmp_path_factory.mktemp("nnunet")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as env:
        for name in ("raw", "preprocessed", "results"):
            env.setenv(f"nnUNet_{name}", str(work / name))
        env.setenv("nnUNet_def_n_proc", "1")
        env.setenv("nnUNet_n_proc_DA", "1")  # planning: 0 would crash torch.set_num_threads
        dataset = tiny_nnunet.write_tiny_dataset(work / "raw")
        tiny_nnunet.plan_and_preprocess()
        env.setenv("nnUNet_n_proc_DA", "0")  # training: no augmentation workers
        results = tiny_nnunet.train(work / "preprocessed")
    torch.set_num_threads(threads)
    return {"dataset": dataset, "results": results, "data": tiny_nnunet.held_out_folder(dataset, work / "held_out")}


def _nnunet_predict(results: Path, images: Path, out: Path) -> None:
    """nnU-Net's own prediction from files to files, as nnUNetv2_predict runs it, set up without imaseg (nnU-Net
    cannot look the test trainer up by name, so its network is built and initialised by hand)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_json = json.loads((results / "dataset.json").read_text())
    plans = PlansManager(json.loads((results / "plans.json").read_text()))
    state = torch.load(results / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    configuration = plans.get_configuration(state["init_args"]["configuration"])
    channels = determine_num_input_channels(plans, configuration, dataset_json)
    heads = plans.get_label_manager(dataset_json).num_segmentation_heads
    network = nnUNetTrainer.build_network_architecture(plans, configuration, channels, heads, False)
    predictor = nnUNetPredictor(perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(
        network,
        plans,
        configuration,
        [state["network_weights"]],
        dataset_json,
        state["trainer_name"],
        state["inference_allowed_mirroring_axes"],
    )
    out.mkdir(parents=True)
    predictor.predict_from_files_sequential(str(images), str(out), False, True, None)


def test_the_network_loads_from_the_results_folder(trained):
    from imaseg.nnunet import default_fold, load_model

    state = torch.load(trained["results"] / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    model = load_model(trained["results"])  # fold: the only one there
    assert default_fold(trained["results"]) == "0" and model.results.fold == "0"
    assert model.trainer_name == tiny_nnunet.TRAINER and model.configuration == "2d"
    assert model.patch_size == (32, 32) and model.num_classes == 2 and model.mirror_axes == (0, 1)
    assert model.class_names == {0: "background", 1: "disc"} and model.epoch == 2
    for name, value in model.network.state_dict().items():
        assert torch.equal(value, state["network_weights"][name]), name
    assert not model.network.training and not model.network.decoder.deep_supervision
    best = load_model(trained["results"], 0, "best")
    assert best.results.checkpoint.name == "checkpoint_best.pth"


@pytest.mark.parametrize("tta", [True, False])
def test_the_differentiable_forward_predicts_as_nnunets_predictor(trained, tta):
    from imaseg.nnunet import load_model
    from imaseg.nnunet.export import reference_logits
    from imaseg.nnunet.preprocessing import preprocess_case

    model = load_model(trained["results"], 0)
    image = trained["dataset"] / "imagesTs" / "tiny_006_0000.nii.gz"
    case = preprocess_case(model, [str(image)], str(trained["dataset"] / "labelsTs" / "tiny_006.nii.gz"))
    theirs, _, _ = model.configuration_manager.preprocessor_class(verbose=False).run_case(
        [str(image)], None, model.plans_manager, model.configuration_manager, model.results.dataset_json
    )
    np.testing.assert_array_equal(case.data, theirs)  # exactly the predictor's input
    (norm,) = case.normalization
    assert norm.scheme == "ZScoreNormalization" and 15 < norm.source_per_unit < 50
    reference = reference_logits(model, case.data, tta=tta)
    x = torch.from_numpy(case.data)[None].requires_grad_(True)
    logits = model.forward_module(tta=tta)(x)  # (1, C, Z, Y, X): the 2D configuration slice by slice
    assert logits.shape == (1, 2, *case.data.shape[1:])
    assert torch.equal(logits[0].argmax(0), reference.argmax(0))
    assert float((logits[0].detach() - reference).abs().max()) < 0.1  # nnU-Net accumulates in float16
    logits[:, 1].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("shape", [(1, 70, 50), (3, 20, 40)])  # (Z, Y, X): overlapping tiles; padding to the patch
def test_the_window_tiles_pads_and_mirrors_as_nnunet(trained, shape):
    from imaseg.nnunet import NnUNetSlidingWindow, load_model

    model = load_model(trained["results"], 0)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    reference = model.predictor(tta=True).predict_sliding_window_return_logits(x).float()
    with torch.no_grad():
        ours = model.forward_module(tta=True)(x[None])[0]
        one_by_one = NnUNetSlidingWindow(model.network, model.patch_size, mirror_axes=(0, 1), tile_batch=1)(x[None])[0]
    assert float((ours - reference).abs().max()) < 0.1
    assert float((ours.argmax(0) == reference.argmax(0)).float().mean()) > 0.995  # float16 ties may flip
    torch.testing.assert_close(one_by_one, ours, atol=1e-4, rtol=1e-4)


def test_evaluate_nnunet_matches_nnunet_predict_and_an_attack_lowers_dice(trained, tmp_path):
    import SimpleITK as sitk

    from imaseg.summary import Summary

    _nnunet_predict(trained["results"], trained["data"] / "imagesTr", tmp_path / "nnunet_predict")
    run = tmp_path / "run"
    cli = ["evaluate", "--nnunet", str(trained["results"]), "--data", str(trained["data"]), "--run", str(run)]
    assert main([*cli, "--no-progress", *FLAGS]) == 0
    evaluation = run / "eval" / "default"
    for case in ("tiny_006", "tiny_007"):
        ours = sitk.ReadImage(str(evaluation / "nnunet" / "reference" / f"{case}.nii.gz"))
        theirs = sitk.ReadImage(str(tmp_path / "nnunet_predict" / f"{case}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
        assert ours.GetSpacing() == theirs.GetSpacing() and ours.GetOrigin() == theirs.GetOrigin()
    record = json.loads((evaluation / "nnunet.json").read_text())
    assert record["matches_nnunet"] and record["agreement"] == 1.0
    assert record["global_dice"]["imaseg_clean"] == record["global_dice"]["nnunet_source"]  # no resampling here
    assert record["normalization"]["tiny_006"][0]["scheme"] == "ZScoreNormalization"
    summary = Summary.from_json(json.loads((evaluation / "summary.json").read_text()))
    # nnU-Net's predictor runs in float16: on this barely trained model a near-tie voxel may go the other way
    assert summary.clean_global == pytest.approx(record["global_dice"]["nnunet_source"][0], abs=0.005)
    attacked = summary.curve("pgd-l2").global_curve
    assert attacked[-1] < summary.clean_global - 0.01, attacked
    rows = [r for r in (evaluation / "results.csv").read_text().splitlines() if ",pgd-l2,l2,2," in r]
    eps_source = float(rows[0].split(",")[6])
    assert eps_source == pytest.approx(2 * record["normalization"][rows[0].split(",")[0]][0]["source_per_unit"])
    assert main([*cli, "--no-tta", "--no-progress", *FLAGS]) == 1  # stored cells are of the model with TTA
    log = RunDir(run).read_log()  # nnU-Net's own per-epoch log, from the checkpoint (2 epochs in `train`)
    assert [int(r["epoch"]) for r in log] == [1, 2] and all(float(r["seconds"]) > 0 for r in log)
    assert {"loss", "val_loss", "val_pseudo_dice", "lr"} <= set(log[0])


def test_score_takes_a_results_folder(trained, tmp_path):
    import imaseg

    summary = imaseg.score(
        trained["results"],
        trained["data"],
        attacks=["pgd-l2"],
        eps=[0],
        steps=1,
        hd95=False,
        steps_check=False,
        overlays=0,
        tta=False,
        out=tmp_path / "score",
    )
    assert summary.facts.cases == ["tiny_006", "tiny_007"] and summary.clean_global > 0.3
    record = json.loads((tmp_path / "score" / "eval" / "default" / "nnunet.json").read_text())
    assert record["model"]["tta"] is False and record["mirror_axes"] == [] and record["matches_nnunet"]
    # nnU-Net's predictor runs in float16: on this barely trained model a near-tie voxel may go the other way
    assert summary.clean_global == pytest.approx(record["global_dice"]["nnunet_source"][0], abs=0.005)


def test_a_missing_fold_or_plans_names_the_file(trained, tmp_path, capsys):
    from imaseg.nnunet import open_results

    with pytest.raises(DataError, match=r"fold_3/checkpoint_final\.pth: fold 3 was not trained here \(folds: 0\)"):
        open_results(trained["results"], 3)
    copy = tmp_path / "Dataset998_ImasegTiny" / trained["results"].name
    shutil.copytree(trained["results"], copy)
    (copy / "fold_0" / "checkpoint_final.pth").unlink()
    with pytest.raises(DataError, match=r"fold_0/checkpoint_final\.pth: missing; training did not finish"):
        open_results(copy, 0)
    (copy / "plans.json").unlink()
    with pytest.raises(DataError, match=r"plans\.json: missing"):
        open_results(copy, 0, "best")
    cli = ["evaluate", "--nnunet", str(trained["results"]), "--fold", "3", "--data", str(trained["data"])]
    assert main([*cli, "--run", str(tmp_path / "run")]) == 1
    assert "fold_3/checkpoint_final.pth: fold 3 was not trained here" in capsys.readouterr().err
