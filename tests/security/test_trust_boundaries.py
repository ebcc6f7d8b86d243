"""A bundle or a run folder from elsewhere is data: its configs run no code unless the user says so, and
``python -m imaseg`` imports nothing from the current folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from monai.networks.nets import UNet

from imaseg.bundle_network import build_network_def
from imaseg.cli import main
from imaseg.data.errors import DataError
from imaseg.foreign import load_foreign_model
from imaseg.networks import build_network, trusted_network_factories

UNET = {"spatial_dims": 2, "in_channels": 1, "out_channels": 4, "channels": [4, 8], "strides": [2], "num_res_units": 0}
SMALL = ["--attacks", "noise-l2", "--eps", "0", "--no-hd95", "--no-steps-check", "--overlays", "0", "--no-progress"]


def _bundle(root: Path, network_def: dict, **extra) -> Path:
    """A MONAI bundle whose weights fit a 2D UNet of :data:`UNET`."""
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps({"network_def": network_def, **extra}))
    torch.save(UNet(**UNET).state_dict(), root / "models" / "model.pt")
    return root


def _code(marker: Path) -> str:
    return f"$__import__('pathlib').Path({str(marker)!r}).write_text('ran') * 0"


@pytest.mark.parametrize(
    ("network_def", "message"),
    [
        pytest.param({"_target_": "UNet", **UNET, "dropout": "EXPR"}, "holds the expression", id="dollar-expression"),
        pytest.param(
            {"_target_": "builtins.open", "file": "MARKER", "mode": "w"}, "_target_ 'builtins.open'", id="open"
        ),
        pytest.param({"_target_": "os.system", "command": "touch MARKER"}, "_target_ 'os.system'", id="os-system"),
        pytest.param({"_target_": "UNet", **UNET, "act": "@evil"}, "holds the expression", id="reference-to-code"),
        pytest.param({"_target_": "UNet", **UNET, "_requires_": "@evil"}, "_requires_", id="requires"),
        pytest.param({"_target_": "UNet", **UNET, "_mode_": "debug"}, "_mode_ 'debug'", id="debug-mode"),
        pytest.param("%configs/other.json#net", "the macro", id="macro"),
    ],
)
def test_an_untrusted_bundle_runs_no_code(tmp_path, network_def, message):
    marker = tmp_path / "MARKER"
    text = json.dumps(network_def).replace('"EXPR"', json.dumps(_code(marker))).replace("MARKER", str(marker))
    bundle = _bundle(tmp_path / "bundle", json.loads(text), evil=_code(marker))
    with pytest.raises(DataError, match=f"{message}.*--trust-bundle-code") as info:
        load_foreign_model(bundle)
    assert "inference.json" in str(info.value)
    assert not marker.exists(), "the bundle's code ran"


def test_the_trust_flag_hands_the_bundle_to_monai(tmp_path):
    marker = tmp_path / "MARKER"
    bundle = _bundle(tmp_path / "bundle", {"_target_": "UNet", **UNET, "dropout": _code(marker)})
    network = load_foreign_model(bundle, trust_code=True)
    assert marker.read_text() == "ran" and isinstance(network, UNet)


def test_the_trust_flag_says_it_runs_the_bundles_code(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--trust-bundle-code RUN THE BUNDLE'S CODE" in help_text and "$ expressions" in help_text


def test_a_plain_monai_bundle_builds_as_data_exactly_as_monai_builds_it(tmp_path):
    from monai.bundle import ConfigParser

    config = {
        "spatial_dims": 2,
        "network_def": {"_target_": "monai.networks.nets.UNet", **UNET, "spatial_dims": "@spatial_dims"},
    }
    ours = build_network_def(config, tmp_path / "inference.json")
    parser = ConfigParser(config)
    theirs = parser.get_parsed_content("network_def")
    assert type(ours) is type(theirs) is UNet
    assert [tuple(p.shape) for p in ours.parameters()] == [tuple(p.shape) for p in theirs.parameters()]


def test_an_imaseg_builder_target_takes_registered_names_only(tmp_path):
    config = {"network_def": {"_target_": "imaseg.networks.build_network", "name": "os:system", **UNET}}
    with pytest.raises(DataError, match=r"network 'os:system' is code .*--trust-factory os:system"):
        build_network_def(config, tmp_path / "inference.json")


def test_evaluate_refuses_an_untrusted_bundle_on_the_command_line(tmp_path, tiny_data, capsys):
    marker = tmp_path / "MARKER"
    bundle = _bundle(tmp_path / "bundle", {"_target_": "builtins.open", "file": str(marker), "mode": "w"})
    argv = ["evaluate", "--model", str(bundle), "--data", str(tiny_data), "--run", str(tmp_path / "ext"), *SMALL]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "_target_ 'builtins.open'" in err and "--trust-bundle-code" in err and "Traceback" not in err
    assert not marker.exists()


EVIL = """
import pathlib
pathlib.Path({marker!r}).with_name("IMPORTED").write_text("imported")


def make(spatial_dims, in_channels, out_channels):
    pathlib.Path({marker!r}).write_text("called")
    import torch
    return torch.nn.Conv2d(in_channels, out_channels, 3, padding=1)
"""


@pytest.fixture
def hostile_run(tiny_run, tmp_path, monkeypatch):
    """A copy of the tiny run whose config.yaml names a network factory that leaves marker files."""
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "evil_nets.py").write_text(EVIL.format(marker=str(tmp_path / "CALLED")))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["network"]["name"] = "evil_nets:make"
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def _commands(run: Path, tiny_data: Path, tmp_path: Path) -> dict[str, list[str]]:
    image = sorted((tiny_data / "imagesTr").iterdir())[0]
    return {
        "evaluate": ["evaluate", "--run", str(run), *SMALL],
        "predict": ["predict", str(run), "--input", str(image), "--output", str(tmp_path / "seg"), "--no-progress"],
        "export": ["export", str(run), "--bundle", str(tmp_path / "bundle")],
    }


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
def test_a_received_run_folder_imports_no_factory_it_names(hostile_run, tiny_data, tmp_path, capsys, command):
    assert main(_commands(hostile_run, tiny_data, tmp_path)[command]) == 1
    err = capsys.readouterr().err
    assert f"{hostile_run / 'config.yaml'}: its network 'evil_nets:make' is code" in err
    assert "--trust-factory evil_nets:make" in err and "Traceback" not in err
    assert not (tmp_path / "IMPORTED").exists() and not (tmp_path / "CALLED").exists()
    assert "evil_nets" not in sys.modules


def test_trust_factory_names_it_and_then_it_is_imported(hostile_run, tiny_data, tmp_path, capsys):
    argv = _commands(hostile_run, tiny_data, tmp_path)["evaluate"]
    assert main([*argv, "--trust-factory", "evil_nets:make"]) == 1  # trusted: built, but its weights do not fit
    assert (tmp_path / "CALLED").read_text() == "called"
    assert "the weights do not fit" in capsys.readouterr().err
    sys.modules.pop("evil_nets", None)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("subprocess:Popen", "cannot be called as a network factory"),
        ("builtins:exec", "cannot be called as a network factory|not a function whose arguments can be checked"),
        ("os:system", "cannot be called as a network factory"),
        ("os:sep", "str is not callable"),
    ],
)
def test_a_callable_that_is_no_factory_is_named_not_called(name, message):
    with trusted_network_factories(name), pytest.raises(ValueError, match=message):
        build_network(name, 2, 1, 3)


def test_python_m_imaseg_imports_nothing_from_the_current_folder(tmp_path, tiny_data):
    folder = tmp_path / "received"
    folder.mkdir()
    for module in ("typing", "numpy", "yaml", "torch", "nibabel", "argparse", "imaseg_cli"):
        (folder / f"{module}.py").write_text(f"open({str(tmp_path / ('MARK_' + module))!r}, 'w').write('x')\n")
    result = subprocess.run(
        [sys.executable, "-m", "imaseg", "check", str(tiny_data)], cwd=folder, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("MARK_*")) == []
