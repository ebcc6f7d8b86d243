"""Without nnunetv2, ``import imaseg.nnunet`` works and every use names the install command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imaseg.cli import main
from imaseg.nnunet import INSTALL, NnUNetMissingError, require_nnunet

COMMAND = (
    r'pip install "imaseg\[nnunet\]" && pip install --no-deps nnunetv2==2.8.1 dynamic-network-architectures==0.4.4'
)


@pytest.fixture
def no_nnunet(monkeypatch):
    monkeypatch.setitem(sys.modules, "nnunetv2", None)  # import nnunetv2 -> ImportError


def test_importing_imaseg_nnunet_does_not_import_nnunetv2():
    code = "import sys, imaseg.nnunet, imaseg.nnunet.run; print('nnunetv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_missing_nnunetv2_names_the_install_command(no_nnunet):
    assert "README" in str(pytest.raises(NnUNetMissingError, require_nnunet).value)
    with pytest.raises(ImportError, match=COMMAND):
        require_nnunet()
    assert INSTALL.startswith('pip install "imaseg[nnunet]"')


def test_the_command_line_says_so_in_one_line(no_nnunet, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    cli = ["evaluate", "--nnunet", str(tmp_path / "results"), "--data", str(tmp_path / "data")]
    assert main([*cli, "--run", str(tmp_path / "run")]) == 1
    assert "needs nnunetv2 2.8.1" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fold", "1"], "--fold and --tta/--no-tta choose what --nnunet RESULTS_FOLDER scores"),
        (["--nnunet", "x", "--model", "y", "--data", "d"], "--nnunet and --model each name the model"),
        (["--nnunet", "x"], "--nnunet needs --data DIR"),
    ],
)
def test_nnunet_flags_are_checked(flags, message, tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path / "run"), *flags]) == 1
    assert message in capsys.readouterr().err
