"""The network factory: every network in 2D and 3D, instance norm by default, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imaseg.networks import NETWORKS, NetworkConfig, build_network, network_help

TINY = {
    "unet": {"channels": (4, 8, 16), "num_res_units": 1},
    "basicunet": {"features": (4, 4, 8, 8, 16, 4)},
    "segresnet": {"init_filters": 4},
    "dynunet": {"depth": 3, "filters": [4, 8, 16]},
    "attentionunet": {"channels": (4, 8, 16)},
}
INSTANCE_NORM_BY_DEFAULT = ["unet", "basicunet", "segresnet", "dynunet"]


def test_tiny_settings_cover_every_network():
    assert sorted(TINY) == sorted(NETWORKS)


@pytest.mark.parametrize("spatial_dims", [2, 3], ids=["2d", "3d"])
@pytest.mark.parametrize("name", list(NETWORKS), ids=list(NETWORKS))
def test_every_network_returns_logits_of_the_input_size(name, spatial_dims):
    torch.manual_seed(0)
    net = build_network(name, spatial_dims, 2, 3, **TINY[name]).eval()
    spatial = (32, 32) if spatial_dims == 2 else (32, 16, 16)  # basicunet halves 4 times, needs >1 voxel
    with torch.no_grad():
        out = net(torch.randn(2, 2, *spatial))
    assert tuple(out.shape) == (2, 3, *spatial)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", INSTANCE_NORM_BY_DEFAULT, ids=INSTANCE_NORM_BY_DEFAULT)
def test_default_norm_is_instance_norm(name):
    modules = list(build_network(name, 2, 1, 2, **TINY[name]).modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)
    assert any(isinstance(m, nn.modules.instancenorm._InstanceNorm) for m in modules)


def test_instance_norm_makes_train_and_eval_agree():
    torch.manual_seed(0)
    net = build_network("unet", 2, 1, 2, **TINY["unet"])
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        train_out = net.train()(x)
        eval_out = net.eval()(x)
    torch.testing.assert_close(train_out, eval_out)


def test_attention_unet_uses_batch_norm_as_documented():
    modules = build_network("attentionunet", 2, 1, 2, **TINY["attentionunet"]).modules()
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in modules)


def test_norm_can_be_overridden():
    modules = build_network("unet", 2, 1, 2, norm="batch", **TINY["unet"]).modules()
    assert any(isinstance(m, nn.BatchNorm2d) for m in modules)


@pytest.mark.parametrize(
    "name", ["UNet", "basic_unet", "Seg-ResNet", "DYNUNET"], ids=["camel", "snake", "dash", "upper"]
)
def test_names_are_normalised(name):
    key = name.lower().replace("-", "").replace("_", "")
    assert type(build_network(name, 2, 1, 2, **TINY[key])) is type(build_network(key, 2, 1, 2, **TINY[key]))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (
            ("transformer", 2, 1, 2),
            "unknown network 'transformer'; choose one of unet, basicunet, segresnet, dynunet, attentionunet",
        ),
        (("unet", 1, 1, 2), "`spatial_dims` must be 2 or 3, got 1"),
        (("unet", 2, 0, 2), "need in_channels >= 1 and out_channels >= 2, got 0, 2"),
        (("unet", 2, 1, 1), "need in_channels >= 1 and out_channels >= 2, got 1, 1"),
    ],
    ids=["unknown-name", "1d", "no-input-channel", "one-class"],
)
def test_bad_arguments_raise(args, match):
    with pytest.raises(ValueError, match=match):
        build_network(*args)


CUSTOM = """
import torch


def make(spatial_dims, in_channels, out_channels):
    conv = torch.nn.Conv2d if spatial_dims == 2 else torch.nn.Conv3d
    return conv(in_channels, out_channels, 3, padding=1)


def not_a_network(spatial_dims, in_channels, out_channels):
    return "nope"
"""


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(CUSTOM)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_nets"


def test_a_network_of_ones_own_trains_evaluates_and_predicts(custom_module, tiny_cache, tiny_data, tmp_path):
    from helpers import tiny_train_config

    from imaseg.evaluation import EvalConfig, evaluate
    from imaseg.prediction import predict
    from imaseg.training import train

    config = tiny_train_config(network=f"{custom_module}:make", epochs=1, val_steps=0)
    train(tiny_cache, tmp_path / "run", config, progress=False)
    summary = evaluate(
        tmp_path / "run",
        EvalConfig(attacks=["pgd-l2"], eps=[0.0, 0.5], steps=1, overlays=0, hd95=False, steps_check=False),
        progress=False,
    )
    assert 0.0 <= summary["clean"]["mean_dice"]["global"] <= 1.0
    image = sorted((tiny_data / "imagesTr").iterdir())[0]
    assert predict(tmp_path / "run", image, tmp_path / "seg", progress=False)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my_nets:missing", "cannot import 'missing' from 'my_nets'"),
        ("no_such_package.nets:make", "cannot import 'make' from 'no_such_package.nets'"),
        ("my_nets:not_a_network", "returned str, not a torch nn.Module"),
    ],
)
def test_bad_factories_are_named(custom_module, name, message):
    with pytest.raises(ValueError, match=message):
        build_network(name, 2, 1, 3)


@pytest.mark.parametrize(
    "train",
    [
        pytest.param({"network": "unet", "channels": [4, 8], "res_units": 1, "dropout": 0.1, "epochs": 3}, id="flat"),
        pytest.param({"network": {"name": "unet", "channels": [4, 8], "res_units": 1, "dropout": 0.1}}, id="nested"),
        pytest.param({"network_name": "unet", "network_channels": "4,8", "res_units": 1, "dropout": 0.1}, id="mixed"),
    ],
)
def test_network_settings_read_the_same_from_every_layout(train):
    network = NetworkConfig.from_mapping(train)
    assert network == NetworkConfig(name="unet", channels=(4, 8), res_units=1, dropout=0.1)
    assert network.build_arguments() == {"channels": (4, 8), "num_res_units": 1, "dropout": 0.1}


def test_network_settings_default_and_refuse_bad_values():
    assert NetworkConfig.from_mapping({"epochs": 3}) == NetworkConfig()
    with pytest.raises(ValueError, match="`res_units` must be int, got 'two'"):
        NetworkConfig.from_mapping({"res_units": "two"})


def test_the_network_help_names_every_registered_network():
    assert all(name in network_help() for name in NETWORKS)
