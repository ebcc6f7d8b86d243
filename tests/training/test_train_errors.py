"""Bad training settings fail with a message naming the setting, from the library and from ``imaseg train``."""

from __future__ import annotations

import pytest
import yaml
from helpers import tiny_train_config

from imaseg.cli import main
from imaseg.training import train

BAD_SETTINGS = [
    pytest.param({"method": "bogus"}, "unknown `method` 'bogus'; choose one of std, pgd-at, trades, ima", id="method"),
    pytest.param({"network": "bogus"}, "unknown network 'bogus'; choose one of unet, ", id="network"),
    pytest.param({"method": "pgd-at", "eps": -0.5}, r"`eps` must be >= 0, got -0.5", id="pgd-at-negative-eps"),
    pytest.param({"method": "trades", "eps": -0.5}, r"`eps` must be >= 0, got -0.5", id="trades-negative-eps"),
    pytest.param(
        {"method": "pgd-at", "adv_weight": 1.5}, r"`adv_weight` must be in \[0, 1\], got 1.5", id="adv-weight"
    ),
    pytest.param(
        {"method": "pgd-at", "clip_range": [0.0]},
        r"`clip_range` must be two numbers \[low, high\], got \(0.0,\)",
        id="clip-range",
    ),
    pytest.param({"method": "ima", "ima_delta": -0.1}, r"`delta` must be >= 0, got -0.1", id="ima-negative-delta"),
    pytest.param(
        {"method": "ima", "ima_eps_max": -1.0}, r"`eps_max` must be >= 0, got -1.0", id="ima-negative-eps-max"
    ),
    pytest.param(
        {"method": "ima", "ima_delta": 2.0, "ima_eps_max": 1.0},
        r"`delta` \(2.0\) must not exceed `eps_max` \(1.0\)",
        id="ima-delta-above-eps-max",
    ),
    pytest.param({"method": "ima", "ima_tau": 1.5}, r"`tau` must be in \[0, 1\], got 1.5", id="ima-tau-above-1"),
    pytest.param({"method": "ima", "ima_tau": -0.2}, r"`tau` must be >= 0, got -0.2", id="ima-tau-below-0"),
    pytest.param(
        {"method": "ima", "ima_margin": "pixel"},
        "unknown `margin` 'pixel'; choose one of sample, voxel",
        id="ima-margin",
    ),
    pytest.param(
        {"method": "ima", "ima_dice_reduction": "median"}, "unknown `dice_reduction` 'median'", id="ima-reduction"
    ),
]


@pytest.mark.parametrize(("settings", "match"), BAD_SETTINGS)
def test_library_raises_a_clear_error_and_writes_no_checkpoint(tiny_cache, tmp_path, settings, match):
    run = tmp_path / "run"
    with pytest.raises(ValueError, match=match):
        train(tiny_cache, run, tiny_train_config(epochs=1, **settings), progress=False)
    assert not (run / "checkpoints").exists()


def cli_train(cache, out, *extra) -> int:
    argv = ["-q", "train", "--cache", str(cache), "--out", str(out), "--no-progress", "--no-tensorboard"]
    argv += ["--epochs", "1", "--channels", "4,8", "--res-units", "0", "--val-steps", "0", *extra]
    return main(argv)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(
            ["--method", "ima", "--ima-delta", "2", "--ima-eps-max", "1"],
            "`delta` (2.0) must not exceed `eps_max` (1.0)",
            id="delta>eps_max",
        ),
        pytest.param(["--method", "ima", "--ima-delta=-0.25"], "`delta` must be >= 0, got -0.25", id="negative-delta"),
        pytest.param(["--method", "ima", "--ima-tau", "1.5"], "`tau` must be in [0, 1], got 1.5", id="tau"),
        pytest.param(["--method", "pgd-at", "--eps=-1"], "`eps` must be >= 0, got -1.0", id="negative-eps"),
        pytest.param(["--network", "bogus"], "unknown network 'bogus'", id="network"),
    ],
)
def test_cli_exits_1_with_the_message(tiny_cache, tmp_path, capsys, flags, message):
    assert cli_train(tiny_cache, tmp_path / "run", *flags) == 1
    err = capsys.readouterr().err
    assert err.startswith("imaseg train: error: ") and message in err and err.count("\n") == 1  # one line
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_cli_unknown_method_in_the_yaml_config_exits_1(tiny_cache, tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"train": {"method": "bogus"}}))
    assert cli_train(tiny_cache, tmp_path / "run", "--config", str(config)) == 1
    err = capsys.readouterr().err  # the file named, and the flags the helper adds
    assert f"imaseg train: error: {config} + command-line flags: unknown `method` 'bogus'" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(["--method", "bogus"], "argument --method: invalid choice: 'bogus'", id="method"),
        pytest.param(["--ima-margin", "pixel"], "argument --ima-margin: invalid choice: 'pixel'", id="ima-margin"),
    ],
)
def test_cli_unknown_choice_flag_is_a_usage_error(tiny_cache, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as info:
        cli_train(tiny_cache, tmp_path / "run", *flags)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_trains_and_resumes(tiny_cache, tmp_path):
    run = tmp_path / "run"
    assert cli_train(tiny_cache, run, "--method", "ima", "--epochs", "2", "--ima-steps", "1") == 0
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "margins.json").is_file()
    assert cli_train(tiny_cache, run, "--method", "ima", "--epochs", "3", "--ima-steps", "1", "--resume") == 0
    lines = (run / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3"]
