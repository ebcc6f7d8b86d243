"""The pipelines' command lines (help, bad input) and every shipped pipeline config, without training."""

from __future__ import annotations

import argparse
import re

import pytest
import yaml
from pipeline_tools import PIPELINES, load_pipeline

from imaseg.pipeline import load_pipeline_config

CONFIGS = sorted(PIPELINES.glob("configs/*.yaml"))
COMMON_FLAGS = ["--out", "--config", "--methods", "--attacks", "--eps", "--seed", "--quick", "--device", "--force"]


@pytest.mark.parametrize("name", ["demo", "heart", "lung"])
def test_help_lists_the_common_flags(name, capsys):
    module = load_pipeline(name)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in COMMON_FLAGS:
        assert flag in text, flag
    if name != "demo":
        assert "--data" in text
    assert "(default: )" not in text  # every default is named, also where --dataset picks the config


def test_lung_help_names_the_config_each_dataset_uses(capsys):
    with pytest.raises(SystemExit):
        load_pipeline("lung").main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "configs/lung_cxr.yaml or configs/lung_ct.yaml, by --dataset" in text


@pytest.mark.parametrize(
    ("name", "argv", "message"),
    [
        ("heart", ["--data", "{missing}"], "does not exist"),
        ("lung", ["--dataset", "ct", "--data", "{missing}"], "does not exist"),
        ("lung", ["--dataset", "both", "--data", "{missing}"], "--data and --config name one data set"),
        ("lung", ["--dataset", "mri"], "invalid choice"),
    ],
    ids=["heart-missing-data", "lung-missing-data", "lung-both-with-data", "lung-bad-dataset"],
)
def test_bad_arguments_stop_before_any_work(name, argv, message, tmp_path, capsys):
    module = load_pipeline(name)
    argv = [a.replace("{missing}", str(tmp_path / "nothing")) for a in argv]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        module.main([*argv, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (out / "stages.json").exists()


def test_unknown_method_is_refused(tmp_path):
    args = argparse.Namespace(
        config=str(PIPELINES / "configs" / "demo.yaml"),
        quick=False,
        methods="std,magic",
        attacks=None,
        eps=None,
        seed=None,
        device=None,
    )
    with pytest.raises(ValueError, match="unknown methods \\['magic'\\]"):
        load_pipeline_config(args)


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_build_every_stage_config(path, quick):
    """Every section of every shipped config (all its methods, with and without ``--quick``) is valid."""
    methods = list(yaml.safe_load(path.read_text())["methods"])
    args = argparse.Namespace(
        config=str(path), quick=quick, methods=",".join(methods), attacks=None, eps=None, seed=3, device="cpu"
    )
    config = load_pipeline_config(args)
    assert config.preprocess.seed == 3
    ordered = [plan.name for plan in config.methods]
    assert sorted(ordered) == sorted(methods)
    for plan in config.methods:
        if plan.init_from:
            assert ordered.index(plan.init_from) < ordered.index(plan.name)
        assert plan.train.seed == 3 and plan.train.device == "cpu"
    assert config.evaluate.eps[0] == 0.0 and sorted(config.evaluate.eps) == config.evaluate.eps
    if path.stem != "demo":
        assert config.data["path"].startswith("../shared/data/")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param({"eps": "0,2/255"}, [0.0, 2 / 255], id="fraction"),
        pytest.param({"eps": "0,0.5,1"}, [0.0, 0.5, 1.0], id="decimals"),
    ],
)
def test_eps_flag_reads_numbers_as_the_main_cli_does(flags, expected):
    args = argparse.Namespace(
        config=str(PIPELINES / "configs" / "demo.yaml"),
        quick=False,
        methods=None,
        attacks=None,
        seed=None,
        device=None,
        **{"eps": None, **flags},
    )
    assert load_pipeline_config(args).evaluate.eps == pytest.approx(expected)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param({"eps": "0,half"}, "`eps` must be float, got 'half'", id="bad-eps"),
        pytest.param({"attacks": "pgd-l2,fgsm-l2"}, "unknown attack 'fgsm-l2'", id="bad-attack"),
    ],
)
def test_bad_flags_stop_before_any_work(flags, message):
    args = argparse.Namespace(
        config=str(PIPELINES / "configs" / "demo.yaml"),
        quick=False,
        methods=None,
        seed=None,
        device=None,
        **{"eps": None, "attacks": None, **flags},
    )
    with pytest.raises(ValueError, match=message):
        load_pipeline_config(args)


@pytest.mark.parametrize(
    ("script", "argv", "message"),
    [
        ("heart.py", ["--eps", "0,half"], "heart.yaml + command-line flags: evaluate: `eps` must be float, got 'half'"),
        ("demo.py", ["--methods", "std,magic"], "pipelines/demo.py: error: unknown methods ['magic']"),
    ],
)
def test_a_script_run_from_the_shell_prints_one_line_not_a_traceback(script, argv, message, tmp_path):
    import subprocess
    import sys

    run = [sys.executable, str(PIPELINES / script), *argv, "--out", str(tmp_path / "out")]
    result = subprocess.run(run, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("methods: [std, ima]\n", "`methods` must be a mapping (key: value lines), got list"),
        ("methods:\n  std: std\n", "`methods.std` must be a mapping of settings, e.g. {method: pgd-at}, got 'std'"),
        ("evaluate: fast\n", "`evaluate` must be a mapping (key: value lines), got str"),
        ("compare: std\n", "`compare` must be a list of method names, e.g. [std, pgd-at, ima], got 'std'"),
        ("evalute:\n  eps: [0, 1]\n", "unknown keys ['evalute']; a pipeline config has data, train, evaluate"),
        ("quick:\n  methods: [std]\n", "`quick.methods` must be a mapping (key: value lines), got list"),
    ],
)
def test_a_wrongly_shaped_config_is_named_before_any_work(text, message, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data: {path: x}\n" + text)
    args = argparse.Namespace(
        config=str(path), quick=False, methods=None, attacks=None, eps=None, seed=None, device=None
    )
    with pytest.raises(ValueError, match=f"{path}: " + re.escape(message)):
        load_pipeline_config(args)


def test_empty_sections_read_as_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("data:\n  path: x\ntrain:\nevaluate:\npreprocess:\nmethods:\n")
    args = argparse.Namespace(
        config=str(path), quick=False, methods=None, attacks=None, eps=None, seed=None, device=None
    )
    config = load_pipeline_config(args)
    assert [plan.name for plan in config.methods] == ["std"] and config.compare == ("std",)


def test_a_config_without_a_data_path_asks_for_data(tmp_path, capsys):
    path = tmp_path / "nodata.yaml"
    path.write_text("methods:\n  std: {method: std}\n")
    with pytest.raises(SystemExit) as exit_info:
        load_pipeline("heart").main(["--config", str(path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert f"{path} names no data.path; pass --data DIR" in capsys.readouterr().err


def test_an_empty_section_in_quick_changes_nothing(tmp_path):
    path = tmp_path / "quick.yaml"
    path.write_text("data: {path: x}\nevaluate: {eps: [0, 0.5]}\nmethods:\n  std: {epochs: 3}\nquick:\n  evaluate:\n"
                    "  methods:\n    std:\n")  # fmt: skip
    args = argparse.Namespace(
        config=str(path), quick=True, methods=None, attacks=None, eps=None, seed=None, device=None
    )
    config = load_pipeline_config(args)
    assert config.evaluate.eps == (0.0, 0.5) or list(config.evaluate.eps) == [0.0, 0.5]
    assert config.methods[0].train.epochs == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{patients: ten}", r"`data` must hold integers, e.g. patients: 10"),
        ("{shape: [96, 96]}", r"`data` needs patients >= 1 and a shape of 3 positive sizes"),
        ("{patients: 0}", r"`data` needs patients >= 1"),
        ("{patients: 2.7}", r"`data` must hold integers"),
        ("{seed: true}", r"`data` must hold integers"),
        ("{patients: 4} --patients -1", r" \+ --patients: `data` needs patients >= 1"),
    ],
)
def test_demo_data_settings_are_checked_before_any_work(data, message, tmp_path):
    config = tmp_path / "demo.yaml"
    data, _, flag = data.partition(" --patients ")
    config.write_text(f"data: {data}\n")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=f"{config}{message}" if flag else f"{config}: {message}"):
        argv = ["--config", str(config), "--out", str(out), *(["--patients", flag] if flag else [])]
        load_pipeline("demo").main(argv)
    assert not (out / "stages.json").exists()
