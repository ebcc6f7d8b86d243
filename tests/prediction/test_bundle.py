"""``imaseg export``: a MONAI bundle that MONAI's own ConfigParser runs, carrying the robustness card; and
``imaseg evaluate --model`` scoring that bundle or a TorchScript model imaseg did not train."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from imaseg.cli import main
from imaseg.evaluation import EvalConfig, evaluate
from imaseg.prediction.bundle import export_bundle

SMALL = ["--attacks", "pgd-l2", "--eps", "0,0.5", "--steps", "2", "--no-hd95", "--no-steps-check", "--overlays", "0"]


@pytest.fixture(scope="module")
def evaluated_run(tiny_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("bundle") / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    evaluate(
        run,
        EvalConfig(attacks=["pgd-l2", "worst-l2"], eps=[0.0, 0.5], steps=2, overlays=0, hd95=False, steps_check=False),
        progress=False,
    )
    return run


@pytest.fixture(scope="module")
def bundle(evaluated_run):
    return export_bundle(evaluated_run, evaluated_run.parent / "bundle")


def test_the_bundle_has_monai_files_and_the_robustness_card(bundle, evaluated_run):
    assert {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()} >= {
        "configs/inference.json",
        "configs/metadata.json",
        "configs/logging.conf",
        "models/model.pt",
        "models/model.ts",
        "docs/README.md",
        "docs/data_license.txt",
        "LICENSE",
    }
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    card = metadata["imaseg"]["robustness_card"]
    summary = json.loads((evaluated_run / "eval" / "default" / "summary.json").read_text())
    assert card["evaluated"] and card["attack"] == "worst-l2"
    assert card["clean_dice"] == summary["clean"]["mean_dice"]["global"]
    assert card["robust_dice"]["0.5"]["dice"] == summary["attacks"]["worst-l2"]["cells"][1]["mean_dice"]["global"]
    assert card["threat_model"]["norm"] == "l2" and card["threat_model"]["steps"] == 2
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"]["3"] == "left ventricle"


def test_the_metadata_is_monai_coded_and_mirrors_the_card(bundle):
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    card = metadata["imaseg"]["robustness_card"]
    image = metadata["network_data_format"]["inputs"]["image"]
    assert image["modality"] == "MR" and image["spatial_shape"] == [32, 32] and image["value_range"] == [0.0, 1.0]
    assert metadata["network_data_format"]["outputs"]["pred"]["format"] == "labels"
    assert metadata["eval_metrics"] == {
        "mean_dice": card["clean_dice"],
        "mean_dice_worst-l2_eps0.5": card["robust_dice"]["0.5"]["dice"],
        "dice_auc_worst-l2": card["auc"],
    }
    assert metadata["optional_packages_version"]["imaseg"] == metadata["required_packages_version"]["imaseg"]
    assert "not on a package index" in metadata["required_packages_note"]
    for key in ("name", "intended_use", "data_source", "references"):
        assert metadata[key], key
    assert any("2005.09147" in r for r in metadata["references"])


def test_the_bundle_holds_no_absolute_path_and_no_expression(bundle, evaluated_run):
    texts = [p.read_text() for p in (bundle / "configs").iterdir()] + [(bundle / "docs" / "README.md").read_text()]
    for root in (str(evaluated_run.parent), str(evaluated_run.resolve().parent), str(bundle)):
        assert not any(root in text for text in texts), root

    def strings(node):
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    inference = json.loads((bundle / "configs" / "inference.json").read_text())
    assert not [s for s in strings(inference) if s.startswith("$")]
    assert {"dataset_dir", "dataset", "evaluator", "checkpointloader", "initialize", "run"} <= set(inference)


def test_the_licences_travel_with_the_weights(bundle):
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in (bundle / "LICENSE").read_text()
    data_licence = (bundle / "docs" / "data_license.txt").read_text()
    assert "CC0" in data_licence and "imaseg demo heart" in data_licence  # the demo set's dataset.json
    readme = (bundle / "docs" / "README.md").read_text()
    assert "python -m monai.bundle run --config_file configs/inference.json --dataset_dir" in readme
    assert "not on a package index" in readme and "| 0.5 |" in readme


def test_the_torchscript_carries_the_metadata(bundle):
    from monai.data import load_net_with_metadata

    network, meta, extra = load_net_with_metadata(
        str(bundle / "models" / "model.ts"), more_extra_files=["inference.json"]
    )
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["imaseg"]["robustness_card"] == metadata["imaseg"]["robustness_card"]
    assert json.loads(extra["inference.json"])["network_def"]["_target_"] == "monai.networks.nets.UNet"
    with torch.no_grad():
        assert network(torch.zeros(1, 1, 32, 32)).shape == (1, 4, 32, 32)


def test_export_writes_the_data_licence_given(evaluated_run, tmp_path):
    (tmp_path / "licence.txt").write_text("ACDC: research use only, non-commercial\n")
    out = tmp_path / "bundle"
    assert (
        main(["export", str(evaluated_run), "--bundle", str(out), "--data-license", str(tmp_path / "licence.txt")]) == 0
    )
    assert (out / "docs" / "data_license.txt").read_text() == "ACDC: research use only, non-commercial\n"


def test_data_without_a_declared_licence_get_a_statement_that_says_so(caplog):
    from imaseg.prediction.bundle_docs import data_info, data_license

    info = data_info(None, "heart")
    assert info.name == "heart" and not info.licence
    with caplog.at_level("WARNING"):
        text = data_license(info)
    assert "licence is unknown" in text and "--data-license" in caplog.text
    assert data_license(info, "CC BY-NC-SA 4.0") == "CC BY-NC-SA 4.0\n"


def test_the_card_lists_a_failed_list_valued_check_as_evaluate_strict_does(tmp_path):
    """A failing row of a list-valued check (Dice rising with the budget) is a failed check on the card,
    the same list ``imaseg evaluate --strict`` fails on."""
    from imaseg.evaluation.checks import failed_checks
    from imaseg.prediction.bundle import robustness_card
    from imaseg.run import RunDir

    clean = {"dice": {"global": [0.8]}, "mean_dice": {"global": 0.8}, "ci_global": [0.7, 0.9]}
    attacked = {"dice": {"global": [0.82]}, "mean_dice": {"global": 0.82}, "ci_global": [0.72, 0.92]}
    checks = {
        "warnings": ["pgd-l2: Dice rises by 0.020 from eps 0 to 0.5"],
        "forward_deterministic": {"max_abs_diff": 0.0, "ok": True},
        "noise_weaker_than_attack": [],
        "dice_falls_with_eps": [{"attack": "pgd-l2", "eps": [0.0, 0.5], "rise": 0.02, "ok": False}],
    }
    summary = {
        "classes": {"1": "lv"},
        "clean": clean,
        "attacks": {"pgd-l2": {"norm": "l2", "eps": [0.0, 0.5], "cells": [clean, attacked], "auc": 0.81}},
        "checks": checks,
        "settings": {"eps_unit": "l2", "steps": 2, "restarts": 1, "seed": 0, "clip_range": [0.0, 1.0]},
        "cases": ["a", "b"],
        "patients": 2,
        "main_attack": "pgd-l2",
    }
    evaluation = RunDir(tmp_path / "run").evaluation("default")
    evaluation.path.mkdir(parents=True)
    evaluation.summary_path.write_text(json.dumps(summary))
    card = robustness_card(tmp_path / "run")
    assert card["evaluated"] and card["robust_dice"]["0.5"]["dice"] == 0.82
    assert card["failed_checks"] == ["dice_falls_with_eps"]
    assert card["failed_checks"] == failed_checks(checks)


def test_evaluate_scores_the_bundle_like_the_run_it_came_from(bundle, evaluated_run, tiny_data, tmp_path):
    assert (
        main(
            [
                "evaluate",
                "--run",
                str(evaluated_run),
                "--data",
                str(tiny_data),
                "--tag",
                "all",
                "--allow-training-cases",
                "--no-progress",
                *SMALL,
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(bundle),
                "--data",
                str(tiny_data),
                "--run",
                str(tmp_path / "ext"),
                "--no-progress",
                *SMALL,
            ]
        )
        == 0
    )
    ours = json.loads((evaluated_run / "eval" / "all" / "summary.json").read_text())
    theirs = json.loads((tmp_path / "ext" / "eval" / "default" / "summary.json").read_text())
    assert theirs["method"] == "external"
    assert theirs["clean"]["mean_dice"]["global"] == pytest.approx(ours["clean"]["mean_dice"]["global"], abs=1e-6)
    assert theirs["attacks"]["pgd-l2"]["cells"][1]["mean_dice"]["global"] == pytest.approx(
        ours["attacks"]["pgd-l2"]["cells"][1]["mean_dice"]["global"], abs=1e-6
    )
    assert main(["report", str(tmp_path / "ext"), "--out", str(tmp_path / "report")]) == 0


def test_evaluate_scores_a_torchscript_model_built_elsewhere(tiny_data, tmp_path):
    status = _evaluate_torchscript(4, tiny_data, tmp_path)
    assert status == 0
    summary = json.loads((tmp_path / "ext" / "eval" / "default" / "summary.json").read_text())
    assert len(summary["cases"]) == len(list((tiny_data / "imagesTr").iterdir()))
    assert summary["spatial_size"] == [32, 32]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/missing.ts", "--data", "{data}"], "missing.ts: no such model file"),
        (["--model", "{tmp}/not_a_model.ts", "--data", "{data}"], "not a TorchScript model"),
        (["--model", "{tmp}/not_a_model.ts"], "--model needs --data"),
    ],
    ids=["missing", "not-torchscript", "no-data"],
)
def test_bad_models_are_named(tmp_path, tiny_data, capsys, args, message):
    (tmp_path / "not_a_model.ts").write_bytes(b"not a model")
    filled = [a.format(tmp=tmp_path, data=tiny_data) for a in args]
    assert main(["evaluate", "--run", str(tmp_path / "ext"), *filled, "--no-progress", *SMALL]) == 1
    assert message in capsys.readouterr().err


def test_a_torchscript_model_with_the_wrong_number_of_channels_is_named(tiny_data, tmp_path, capsys):
    status = _evaluate_torchscript(3, tiny_data, tmp_path)  # the data have 4 classes
    assert status == 1
    err = capsys.readouterr().err
    assert "returns (1, 3, 32, 32)" in err and "the data have 4 classes" in err


def _evaluate_torchscript(out_channels: int, tiny_data, tmp_path) -> int:
    """Script a tiny MONAI UNet with ``out_channels`` logits and score it with ``evaluate --model``."""
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    network = UNet(2, 1, out_channels, channels=(4, 8), strides=(2,), num_res_units=0, norm="instance").eval()
    torch.jit.save(torch.jit.script(network), str(tmp_path / "model.ts"))
    (tmp_path / "pre.yaml").write_text("intensity: none\nspatial_size: [32, 32]\n")
    model, run, pre = (str(tmp_path / n) for n in ("model.ts", "ext", "pre.yaml"))
    return main(
        [
            "evaluate",
            "--model",
            model,
            "--data",
            str(tiny_data),
            "--run",
            run,
            "--preprocess-config",
            pre,
            "--no-progress",
            *SMALL,
        ]
    )


@pytest.mark.parametrize("network", ["unet", "basicunet", "segresnet", "dynunet", "attentionunet"])
def test_network_def_builds_the_network_training_built(network):
    """Every registered network exports as a network_def that MONAI's ConfigParser turns into the same module."""
    from types import SimpleNamespace

    from monai.bundle import ConfigParser

    from imaseg.cache.manifest import DataShape
    from imaseg.cache.run_record import PreprocessingRecord
    from imaseg.networks import NetworkConfig
    from imaseg.prediction.bundle import _network_def

    train = {"network": network, "channels": [4, 8, 16], "res_units": 1, "dropout": 0.0}
    record = PreprocessingRecord({}, shape=DataShape(in_channels=1, num_classes=3, spatial_dims=2))
    model = SimpleNamespace(preprocessing_record=record, num_classes=3)
    parser = ConfigParser({"network_def": _network_def(model, train)})  # a stand-in RunModel: shape and classes
    exported = parser.get_parsed_content("network_def")
    trained = NetworkConfig.from_mapping(train).build(2, 1, 3)
    assert type(exported) is type(trained)
    assert {k: v.shape for k, v in exported.state_dict().items()} == {
        k: v.shape for k, v in trained.state_dict().items()
    }
