"""Every command that writes meets an unwritable output with 'cannot write X: reason' and exit 1, never a
traceback: a read-only folder (simulated, since tests may run as root) and a file where a folder should be."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
from helpers import TINY_CHANNELS

from imaseg.cli import main
from imaseg.utils import atomic


def _argv(command: str, out: Path, tiny_data: Path, tiny_cache: Path, run: Path) -> list[str]:
    channels = ",".join(map(str, TINY_CHANNELS))
    return {
        "check": ["check", str(tiny_data), "--json", str(out / "check.json")],
        "preprocess": [
            "preprocess",
            "--data",
            str(tiny_data),
            "--out",
            str(out / "cache"),
            "--intensity",
            "none",
            "--spatial-size",
            "16,16",
            "--folds",
            "5",
            "--group-regex",
            r"^(patient\d+)",
        ],
        "train": [
            "train",
            "--cache",
            str(tiny_cache),
            "--out",
            str(out / "run"),
            "--epochs",
            "1",
            "--channels",
            channels,
            "--res-units",
            "0",
            "--no-tensorboard",
            "--no-progress",
            "--val-steps",
            "0",
        ],
        "evaluate": [
            "evaluate",
            "--run",
            str(run),
            "--attacks",
            "noise-l2",
            "--eps",
            "0",
            "--no-hd95",
            "--no-steps-check",
            "--overlays",
            "0",
            "--no-progress",
        ],
        "report": ["report", str(run), "--out", str(out / "report")],
    }[command]


COMMANDS = ["check", "preprocess", "train", "evaluate", "report"]


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(tiny_run, target)
    return target


@pytest.mark.parametrize("command", COMMANDS)
def test_a_file_where_the_output_folder_should_be(command, tmp_path, tiny_data, tiny_cache, run, capsys):
    blocker = run / "eval" if command == "evaluate" else tmp_path / "blocker"  # evaluate writes into RUN/eval
    blocker.write_text("a file, not a folder")
    assert main(_argv(command, blocker, tiny_data, tiny_cache, run)) == 1
    err = capsys.readouterr().err
    assert f"imaseg {command}: error: cannot write {blocker}" in err and f"{blocker} is a file, not a folder" in err
    assert "Traceback" not in err
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EACCES, "Permission denied"),
        (errno.ENOSPC, "the disk is full (ENOSPC: No space left on device); free some space"),
    ],
    ids=["read-only", "disk-full"],
)
@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_output(command, code, reason, tmp_path, tiny_data, tiny_cache, run, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code), kwargs.get("dir") or args[-1])

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    assert main(_argv(command, out, tiny_data, tiny_cache, run)) == 1
    err = capsys.readouterr().err
    assert f"imaseg {command}: error: cannot write " in err and reason in err
    assert "Traceback" not in err and err.count("error:") == 1


def test_json_naming_a_folder(tmp_path, tiny_data, capsys):
    folder = tmp_path / "report.json"
    folder.mkdir()
    assert main(["check", str(tiny_data), "--json", str(folder)]) == 1
    assert f"imaseg check: error: cannot write {folder}: Is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("tag", ["../escape", "a/b", "..", ""])
def test_evaluation_tags_are_plain_folder_names(tag, run, capsys):
    assert main(["evaluate", "--run", str(run), "--tag", tag, "--no-progress"]) == 1
    assert "`tag` must be a plain folder name" in capsys.readouterr().err
