"""``imaseg.score``: one call scores an in-memory module, a TorchScript file, a bundle or a run, with the
numbers ``imaseg evaluate`` gives the same model."""

from __future__ import annotations

import json

import pytest
import torch

import imaseg
from imaseg.cli import main
from imaseg.summary import Summary

SETTINGS = {"steps": 2, "hd95": False, "steps_check": False, "overlays": 0}
FLAGS = ["--attacks", "pgd-l2", "--eps", "0,0.5", "--steps", "2", "--no-hd95", "--no-steps-check", "--overlays", "0"]
PREPROCESS = {"intensity": "none", "spatial_size": [32, 32]}


@pytest.fixture(scope="module")
def network():
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(2, 1, 4, channels=(4, 8), strides=(2,), num_res_units=0, norm="instance").eval()


def _same(ours: Summary, theirs: Summary) -> None:
    assert ours.facts.cases == theirs.facts.cases
    assert ours.clean_global == pytest.approx(theirs.clean_global, abs=1e-6)
    assert ours.clean.class_dice() == pytest.approx(theirs.clean.class_dice(), abs=1e-6, nan_ok=True)
    for mine, cli in zip(ours.curve("pgd-l2").cells, theirs.curve("pgd-l2").cells):
        assert mine.global_dice == pytest.approx(cli.global_dice, abs=1e-6)
        assert mine.class_dice() == pytest.approx(cli.class_dice(), abs=1e-6, nan_ok=True)


def test_score_of_a_module_equals_evaluate_model_on_its_torchscript(network, tiny_data, tmp_path):
    torch.jit.save(torch.jit.script(network), str(tmp_path / "model.ts"))
    (tmp_path / "pre.yaml").write_text(json.dumps(PREPROCESS))
    cli = ["evaluate", "--model", str(tmp_path / "model.ts"), "--data", str(tiny_data), "--run", str(tmp_path / "cli")]
    assert main([*cli, "--preprocess-config", str(tmp_path / "pre.yaml"), "--no-progress", *FLAGS]) == 0
    theirs = Summary.from_json(json.loads((tmp_path / "cli" / "eval" / "default" / "summary.json").read_text()))
    ours = imaseg.score(network, tiny_data, preprocess=PREPROCESS, attacks=["pgd-l2"], eps=[0, 0.5], **SETTINGS)
    assert isinstance(ours, Summary) and len(ours.facts.cases) == 10
    _same(ours, theirs)
    kept = imaseg.score(
        tmp_path / "model.ts",
        tiny_data,
        preprocess=PREPROCESS,
        attacks=["pgd-l2"],
        eps=[0, 0.5],
        out=tmp_path / "o",
        **SETTINGS,
    )
    _same(kept, theirs)
    assert (tmp_path / "o" / "eval" / "default" / "summary.json").is_file()


def test_score_of_a_run_and_of_its_bundle_agree(tiny_run, tiny_data, tmp_path):
    import shutil

    from imaseg.prediction.bundle import export_bundle

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    bundle = export_bundle(run, tmp_path / "bundle")
    options = {"attacks": ["pgd-l2"], "eps": [0, 0.5], "allow_training_cases": True, "tag": "all", **SETTINGS}
    of_run = imaseg.score(run, tiny_data, **options)
    of_bundle = imaseg.score(bundle, tiny_data, **options)
    _same(of_bundle, of_run)
    assert (run / "eval" / "all" / "summary.json").is_file(), "a run keeps its evaluations"


def test_score_refuses_what_does_not_fit(network, tiny_run, tiny_data, tmp_path):
    with pytest.raises(ValueError, match="`preprocess` and `out` are for models"):
        imaseg.score(tiny_run, tiny_data, preprocess=PREPROCESS)
    with pytest.raises(ValueError, match="unknown"):
        imaseg.score(network, tiny_data, stepz=2)

    class Unscriptable(torch.nn.Module):
        def forward(self, x, *rest):
            return x

    with pytest.raises(TypeError, match="the module does not script"):
        imaseg.score(Unscriptable(), tiny_data, out=tmp_path / "u")
