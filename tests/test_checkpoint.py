"""Checkpoints: atomic writes, safe loading (tensors and plain containers only), RNG state round trip."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from imaseg import checkpoint as checkpoint_module
from imaseg.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state


class Payload:
    """An arbitrary object; pickling it into a checkpoint would let loading run its code."""

    def __reduce__(self):
        return (print, ("this would run on load",))


@pytest.fixture
def last_pt(tiny_run, tmp_path) -> Path:
    return Path(shutil.copy(tiny_run / "checkpoints" / "last.pt", tmp_path / "last.pt"))


def test_a_trained_checkpoint_loads_with_its_parts(last_pt):
    state = load_checkpoint(last_pt)
    assert {"network", "optimizer", "scheduler", "method", "epoch", "best", "rng", "config", "data"} <= set(state)
    assert state["epoch"] == 8 and isinstance(state["network"], dict)


def test_arbitrary_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"network": {}, "evil": Payload()}, path)
    with pytest.raises(
        ValueError, match=r"evil\.pt: refusing to load: the checkpoint carries objects other than tensors"
    ) as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value) and "add_safe_globals" not in str(info.value)
    assert "(a pickled builtins.print)" in str(info.value) or "(a pickled print)" in str(info.value), (
        "names the culprit"
    )


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.01], ids=["half", "most", "header-only"])
def test_a_truncated_file_is_a_clear_error(last_pt, keep):
    data = last_pt.read_bytes()
    last_pt.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match=r"last\.pt: not a readable PyTorch checkpoint \(truncated, corrupt"):
        load_checkpoint(last_pt)


def test_an_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content",
    [pytest.param(b"hello world\n", id="text"), pytest.param(b"PK\x03\x04junk", id="zip-header")],
)
def test_another_kind_of_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "notes.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"notes\.pt: not a readable PyTorch checkpoint .*written by `imaseg train`"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_name_the_tensors_and_shapes():
    from torch import nn

    from imaseg.checkpoint import load_weights

    network = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 3, 1))
    weights = {k: v for k, v in nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(8, 3, 1)).state_dict().items()}
    weights["extra.weight"] = torch.zeros(1)
    del weights["1.bias"]
    with pytest.raises(ValueError) as info:
        load_weights(network, weights, "model.pt")
    message = str(info.value)
    assert message.startswith("model.pt: the weights do not fit this network")
    assert "0.weight: checkpoint (8, 1, 3, 3) vs network (4, 1, 3, 3)" in message
    assert "missing in the checkpoint (1): 1.bias" in message and "not in the network (1): extra.weight" in message


@pytest.mark.parametrize(
    "content",
    [pytest.param([1, 2], id="list"), pytest.param({"weights": torch.zeros(2)}, id="dict-without-network")],
)
def test_a_torch_file_that_is_no_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match="not an imaseg checkpoint \\(no 'network' weights\\)"):
        load_checkpoint(path)


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*nothing\.pt does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_save_replaces_the_file_whole(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    save_checkpoint(path, {"network": {"w": torch.ones(2)}, "epoch": 1})
    save_checkpoint(path, {"network": {"w": torch.zeros(3)}, "epoch": 2})
    state = load_checkpoint(path)
    assert state["epoch"] == 2 and torch.equal(state["network"]["w"], torch.zeros(3))
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]


def test_a_save_killed_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"network": {"w": torch.ones(2)}, "epoch": 1})

    def killed_mid_write(obj, f, *args, **kwargs):
        (f.write if hasattr(f, "write") else Path(f).write_bytes)(b"PK\x03\x04 partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", killed_mid_write)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"network": {"w": torch.zeros(2)}, "epoch": 2})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["network"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_rng_state_survives_a_checkpoint_round_trip(tmp_path):
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    np.random.normal()  # a cached Gaussian is part of NumPy's state
    save_checkpoint(tmp_path / "c.pt", {"network": {}, "rng": rng_state()})
    expected = (random.random(), float(np.random.normal()), torch.rand(3))

    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (random.random(), float(np.random.normal()), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
