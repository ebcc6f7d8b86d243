"""The training config's sections (network, adversarial, ima): each setting defined once, the older flat
layout (config files, pipelines, run folders, flags) still read the same, help texts made from the registries."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from imaseg.config import config_from_dict, load_yaml, to_dict
from imaseg.config_flags import add_config_arguments, resolve_config
from imaseg.networks import NETWORKS, NetworkConfig, network_help
from imaseg.run import RunDir
from imaseg.training.config import AdversarialConfig, TrainConfig
from imaseg.training.methods import METHODS, describe_method, method_names

FLAT_LAYOUT = Path(__file__).parent / "data" / "config_flat_layout.yaml"


def parse(*flags: str, yaml_data: dict | None = None) -> TrainConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    return resolve_config(TrainConfig, yaml_data or {}, parser.parse_args(list(flags)))


def test_a_run_config_in_the_flat_layout_loads_to_the_same_settings():
    old = load_yaml(FLAT_LAYOUT)
    config = config_from_dict(TrainConfig, old["train"], source="train")
    assert config.network == NetworkConfig("unet", (4, 8, 16), 0, 0.1)
    assert config.adversarial == AdversarialConfig(eps=0.75, steps=3, alpha_factor=2.0, weight=0.6, trades_beta=5.0)
    assert (config.clip_range, config.ima.delta, config.epochs) == ((0.0, 1.0), 0.2, 2)
    assert describe_method(config) == old["method"], "the method's label and settings read as before"
    nested = to_dict(config)
    assert "channels" not in nested and nested["network"]["channels"] == [4, 8, 16]
    assert config_from_dict(TrainConfig, nested) == config, "the new layout reads back to the same config"


def test_readers_of_a_run_folder_rebuild_the_network_from_either_layout(tmp_path):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    shutil.copy(FLAT_LAYOUT, run.config_path)
    flat = NetworkConfig.from_mapping(run.train_settings())
    run.write_config({"train": config_from_dict(TrainConfig, run.train_settings())})
    assert "network" in run.read_config()["train"] and "channels" not in run.read_config()["train"]
    assert NetworkConfig.from_mapping(run.train_settings()) == flat == NetworkConfig("unet", (4, 8, 16), 0, 0.1)
    torch.manual_seed(0)
    a = flat.build(2, 1, 3)
    torch.manual_seed(0)
    b = NetworkConfig.from_mapping(run.train_settings()).build(2, 1, 3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"network": {"channels": [4]}}, (4,), id="nested"),
        pytest.param({"channels": [8]}, (8,), id="flat-alias"),
        pytest.param({"network_channels": "2,4"}, (2, 4), id="flat-section-key"),
        pytest.param({"network": {"channels": [4]}, "channels": [8]}, (8,), id="alias-beats-nested"),
        pytest.param({"channels": [8], "network_channels": [2]}, (2,), id="section-key-beats-alias"),
    ],
)
def test_section_keys_precedence(data, expected):
    assert config_from_dict(TrainConfig, data).network.channels == expected


def test_a_plain_network_value_is_its_name():
    config = config_from_dict(TrainConfig, {"network": "segresnet", "res_units": 1})
    assert (config.network.name, config.network.res_units) == ("segresnet", 1)


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(
            ["--network", "segresnet", "--channels", "4,8", "--res-units", "1", "--dropout", "0.2"], id="old-flags"
        ),
        pytest.param(
            [
                "--network-name",
                "segresnet",
                "--network-channels",
                "4,8",
                "--network-res-units",
                "1",
                "--network-dropout",
                "0.2",
            ],
            id="section-flags",
        ),
    ],
)
def test_network_flags_old_and_new(flags):
    assert parse(*flags).network == NetworkConfig("segresnet", (4, 8), 1, 0.2)


def test_adversarial_flags_old_and_new_and_flags_beat_the_yaml():
    old = parse(
        "--eps", "1/2", "--norm", "linf", "--attack-steps", "3", "--attack-alpha-factor", "2", "--adv-weight", "0.7"
    )
    new = parse(
        "--adversarial-eps=0.5",
        "--adversarial-norm=linf",
        "--adversarial-steps=3",
        "--adversarial-alpha-factor=2",
        "--adversarial-weight=0.7",
    )
    assert old.adversarial == new.adversarial == AdversarialConfig(0.5, "linf", 3, 2.0, 0.7)
    from_yaml = parse("--eps", "2", yaml_data={"adversarial": {"eps": 1.0, "steps": 4}, "trades_beta": 3})
    assert (from_yaml.adversarial.eps, from_yaml.adversarial.steps, from_yaml.adversarial.trades_beta) == (2.0, 4, 3.0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param([0, 1], (0.0, 1.0), id="list"),
        pytest.param("0,255", (0.0, 255.0), id="flag-text"),
        pytest.param(None, None, id="none"),
        pytest.param("none", None, id="none-text"),
    ],
)
def test_clip_range_is_a_typed_pair(value, expected):
    assert config_from_dict(TrainConfig, {"clip_range": value}).clip_range == expected
    assert TrainConfig(clip_range=value if not isinstance(value, str) else expected).clip_range == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        pytest.param([0.0, 1.0, 2.0], r"`clip_range` must be two numbers \[low, high\]", id="three"),
        pytest.param([1.0, 0.0], r"`clip_range` must have low < high, got \(1.0, 0.0\)", id="reversed"),
    ],
)
def test_a_bad_clip_range_is_refused_when_the_config_is_built(value, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(TrainConfig, {"clip_range": value})


def test_pgd_at_and_trades_take_their_attack_from_the_one_section():
    from imaseg.training.methods.adversarial import AdversarialMethod

    config = config_from_dict(TrainConfig, {"eps": 0.3, "attack_steps": 4, "clip_range": [0, 1]})
    generator = torch.Generator()
    for name in ("pgd-at", "trades"):
        method = METHODS[name](config, True, [], 2)
        assert isinstance(method, AdversarialMethod)
        assert method.attack_arguments(generator) == {
            "eps": 0.3,
            "norm": "l2",
            "steps": 4,
            "alpha_factor": 2.5,
            "clip_range": (0.0, 1.0),
            "generator": generator,
            "autocast_dtype": None,
        }


def _train_help() -> str:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, TrainConfig)
    return " ".join(parser.format_help().split())


def test_train_help_lists_every_registered_method_and_network():
    from imaseg.commands import train as train_command

    text = _train_help()
    for name in method_names():
        assert name in train_command.HELP
        assert f"{name}," in text or f"{name} " in text or f"{name})" in text
    assert f"MONAI network: {', '.join(NETWORKS)};" in text
    assert "adversarial training (pgd-at, trades)" in text, "the section names the methods that use it"


def test_help_texts_follow_the_registries(monkeypatch):
    from imaseg.training.methods.std import Standard

    monkeypatch.setitem(NETWORKS, "tinynet", lambda *args, **kwargs: nn.Identity())
    assert "tinynet" in network_help()

    class Extra(Standard):
        order = 99

    monkeypatch.setitem(METHODS, "extra-std", Extra)
    assert "training method: std, pgd-at, trades, ima, extra-std" in _train_help()


def test_epochs_must_be_positive():
    from helpers import tiny_train_config

    with pytest.raises(ValueError, match="`epochs` must be >= 1, got -1"):
        tiny_train_config(epochs=-1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"val_every": 0},
            r"`val_every` must be >= 1, got 0 \(to train without validation, preprocess with val_groups 0\)",
        ),
        (
            {"aug_scale": [0.9]},
            r"`aug_scale` must be two zoom factors, low <= high, both > 0, e.g. 0.85,1.2; got \[0.9\]",
        ),
        ({"aug_scale": [1.2, 0.8]}, r"`aug_scale` must be two zoom factors.*got \[1.2, 0.8\]"),
    ],
)
def test_settings_that_would_fail_mid_training_are_refused_up_front(overrides, message):
    from helpers import tiny_train_config

    with pytest.raises(ValueError, match=message):
        tiny_train_config(**overrides)
