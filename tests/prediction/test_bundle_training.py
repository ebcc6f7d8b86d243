"""``configs/train.json``: MONAI's command line preprocesses new data as the model's were and trains with the
run's settings; a fine-tuned run gets none (its recipe starts from a checkpoint the bundle does not hold)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import yaml

from imaseg.prediction.bundle import export_bundle
from imaseg.run import RunDir


def test_monai_trains_a_bundle_again_with_the_runs_settings(tiny_run, tiny_data, tmp_path):
    bundle = export_bundle(tiny_run, tmp_path / "bundle")
    training = json.loads((bundle / "configs" / "train.json").read_text())
    assert training["train"] == RunDir(tiny_run).train_settings()
    assert "/" not in json.dumps(training["preprocess"]), "no paths of this machine in the bundle"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/train.json"]
    command += ["--dataset_dir", str(tiny_data), "--output_dir", str(tmp_path / "out"), "--train#epochs", "1"]
    done = subprocess.run(command, cwd=bundle, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunDir(tmp_path / "out" / "run")
    assert run.last_checkpoint.is_file()
    settings = run.train_settings()
    assert settings["epochs"] == 1
    assert {k: v for k, v in settings.items() if k != "epochs"} == {
        k: v for k, v in training["train"].items() if k != "epochs"
    }
    assert "## Train it again" in (bundle / "docs" / "README.md").read_text()


def test_a_fine_tuned_run_gets_no_train_json_and_its_readme_says_why(tiny_run, tmp_path):
    run = shutil.copytree(tiny_run, tmp_path / "fine_tuned")
    config_path = RunDir(run).config_path
    config = yaml.safe_load(config_path.read_text())
    config["train"]["init"] = "elsewhere/checkpoints/last.pt"
    config_path.write_text(yaml.safe_dump(config))
    bundle = export_bundle(run, tmp_path / "bundle")
    assert not (bundle / "configs" / "train.json").exists()
    assert "fine-tuned from another model's checkpoint" in (bundle / "docs" / "README.md").read_text()
