"""``imaseg export --bundle --postprocess lcc``: the bundle's postprocessing keeps the largest component per class
with MONAI's own transform, MONAI's runner then writes the masks ``imaseg predict --postprocess lcc`` writes, and by
default a bundle post-processes as the evaluation on its card did."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from imaseg.cli import main
from imaseg.evaluation import EvalConfig, evaluate
from imaseg.prediction import PredictConfig, predict
from imaseg.prediction.bundle import export_bundle, inference_config
from imaseg.run_model import load_run_model

pytest.importorskip("skimage", reason="lcc needs scikit-image (in the test extra)")
LCC = {
    "_target_": "KeepLargestConnectedComponentd",
    "keys": "pred",
    "is_onehot": False,
    "independent": True,
    "num_components": 1,
}


def _targets(config: dict) -> list[str]:
    return [t["_target_"].rsplit(".", 1)[-1] for t in config["postprocessing"]["transforms"]]


def test_the_inference_config_adds_monais_transform_for_lcc_only(tiny_run):
    from monai.bundle import ConfigParser
    from monai.transforms import KeepLargestConnectedComponentd

    model = load_run_model(tiny_run)
    assert _targets(inference_config(model)) == ["AsDiscreted", "SourceGridd", "SaveImaged"]
    config = inference_config(model, "lcc")
    assert _targets(config) == ["AsDiscreted", "KeepLargestConnectedComponentd", "SourceGridd", "SaveImaged"]
    assert config["postprocessing"]["transforms"][1] == {**LCC, "applied_labels": list(range(1, model.num_classes))}
    parser = ConfigParser({**config, "output_dir": "out"})
    transform = parser.get_parsed_content("postprocessing").transforms[1]
    assert isinstance(transform, KeepLargestConnectedComponentd)
    assert transform.converter.independent and transform.converter.is_onehot is False
    with pytest.raises(ValueError, match=r"unknown `postprocess` 'holes'; choose one of none, lcc"):
        inference_config(model, "holes")


def test_monais_runner_writes_the_masks_predict_writes_with_lcc(tiny_run, tiny_data, tmp_path):
    pytest.importorskip("ignite", reason="MONAI's evaluator needs pytorch-ignite (in the test extra)")
    from monai.bundle import run

    images = tmp_path / "in"
    images.mkdir()
    for source in sorted((tiny_data / "imagesTr").iterdir())[:2]:
        shutil.copy(source, images / source.name)
    bundle = export_bundle(tiny_run, tmp_path / "bundle", postprocess="lcc")
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert "scikit-image" in metadata["required_packages_version"]
    run(
        config_file=str(bundle / "configs" / "inference.json"),
        meta_file=str(bundle / "configs" / "metadata.json"),
        bundle_root=str(bundle),
        dataset_dir=str(images),
        output_dir=str(tmp_path / "monai"),
        logging_file=False,
    )
    predict(tiny_run, images, tmp_path / "lcc", PredictConfig(postprocess="lcc"), progress=False)
    predict(tiny_run, images, tmp_path / "raw", PredictConfig(), progress=False)
    changed = 0
    for image in sorted(images.iterdir()):
        name = image.name
        theirs = np.asarray(nib.load(tmp_path / "monai" / name).dataobj)
        ours = np.asarray(nib.load(tmp_path / "lcc" / name).dataobj)
        np.testing.assert_array_equal(theirs, ours, err_msg=name)
        changed += int(not np.array_equal(ours, np.asarray(nib.load(tmp_path / "raw" / name).dataobj)))
    assert changed, "the tiny model predicts islands, so lcc is seen at work"


def test_a_bundle_post_processes_as_its_cards_evaluation_did(tiny_run, tmp_path, caplog):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    config = EvalConfig(attacks=["pgd-l2"], eps=[0.0, 0.5], steps=1, overlays=0, hd95=False, steps_check=False)
    evaluate(run, replace(config, postprocess="lcc"), progress=False)  # into eval/default-lcc
    with caplog.at_level(logging.WARNING, logger="imaseg.prediction.bundle"):
        export_bundle(run, tmp_path / "raw", tag="default-lcc", postprocess="none")
    assert "the robustness card (evaluation 'default-lcc') was measured with lcc" in caplog.text
    assert "KeepLargestConnectedComponentd" not in _targets(
        json.loads((tmp_path / "raw" / "configs" / "inference.json").read_text())
    )
    assert main(["export", str(run), "--bundle", str(tmp_path / "bundle"), "--tag", "default-lcc"]) == 0
    inference = json.loads((tmp_path / "bundle" / "configs" / "inference.json").read_text())
    metadata = json.loads((tmp_path / "bundle" / "configs" / "metadata.json").read_text())
    assert "KeepLargestConnectedComponentd" in _targets(inference)
    assert metadata["imaseg"]["robustness_card"]["postprocess"] == "lcc"
    assert "post-processed (lcc)" in (tmp_path / "bundle" / "docs" / "README.md").read_text()
