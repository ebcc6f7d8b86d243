"""The command line, run in-process through ``main([...])``."""

from __future__ import annotations

import json

import pytest
import yaml
from helpers import real_data

from imaseg import __version__
from imaseg.cli import SUBCOMMANDS, build_parser, main


def test_preprocess_writes_a_manifest(msd_folder, tmp_path, capsys):
    out = tmp_path / "cache"
    argv = ["preprocess", "--data", str(msd_folder), "--out", str(out), "--spatial-size", "16,16", "--folds", "2"]
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["spatial_size"] == [16, 16] and manifest["config"]["folds"] == 2
    assert sorted(manifest["splits"]) == ["0", "1"]
    assert manifest["num_samples"] == 24
    assert "4 cases, 24 samples, 3 classes" in capsys.readouterr().err


def test_preprocess_flags_override_the_yaml_config(msd_folder, tmp_path, capsys):
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"preprocess": {"spatial_size": [12, 12], "folds": 2, "seed": 3}}))
    out = tmp_path / "cache"
    argv = ["-q", "preprocess", "--data", str(msd_folder), "--out", str(out), "--config", str(config), "--seed", "5"]
    assert main(argv) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())["preprocess"]
    assert saved["spatial_size"] == [12, 12] and saved["folds"] == 2 and saved["seed"] == 5
    assert "samples" not in capsys.readouterr().err  # -q: no INFO summary


@pytest.mark.parametrize(
    ("extra", "match"),
    [(["--folds", "2.5"], "`folds` must be int, got '2.5'"), (["--folds", "9"], "only 2 patient groups for 9 folds")],
    ids=["bad-value", "too-many-folds"],
)
def test_preprocess_bad_settings_exit_1_with_a_message(msd_folder, tmp_path, capsys, extra, match):
    argv = ["preprocess", "--data", str(msd_folder), "--out", str(tmp_path / "c"), "--spatial-size", "16,16", *extra]
    assert main(argv) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("imaseg preprocess: error: ") and match in last


def test_preprocess_missing_data_exits_1_naming_it(tmp_path, capsys):
    missing = tmp_path / "nothing"
    assert main(["preprocess", "--data", str(missing), "--out", str(tmp_path / "c")]) == 1
    assert f"imaseg preprocess: error: {missing}: data folder does not exist" in capsys.readouterr().err


def test_demo_data_then_check(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo-data", str(out), "--patients", "2", "--size", "32", "32", "4", "--seed", "1"]) == 0
    assert len(list((out / "imagesTr").glob("*.nii.gz"))) == 4
    assert main(["check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 cases, modality MRI" in text and "32x32x4" in text


def test_unknown_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_no_subcommand_prints_help_and_returns_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: imaseg" in out and "imaseg check DATA_DIR" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"imaseg {__version__}"


def test_missing_required_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["preprocess", "--out", "x"])
    assert info.value.code == 2
    assert "the following arguments are required: --data" in capsys.readouterr().err


def test_available_subcommands_are_registered():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert {"demo-data", "check", "preprocess"} <= set(choices) <= set(SUBCOMMANDS)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["acdc_heart", "acdc_real_headers", "cxr_lung", "lung_ct"])
def test_check_real_data_sets_pass(name, capsys):
    assert main(["check", str(real_data(name))]) == 0
    assert capsys.readouterr().out.rstrip().endswith("0 problem(s): the data set is ready")
