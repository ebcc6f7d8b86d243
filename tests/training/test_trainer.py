"""The training loop: what every method writes, bit-identical resume, crash safety of the run folder."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import tiny_train_config

from imaseg import checkpoint as checkpoint_module
from imaseg.cache.reader import CaseStore
from imaseg.checkpoint import load_checkpoint
from imaseg.training import build_model_from_config, train

BASE_COLUMNS = {
    "epoch",
    "seconds",
    "lr",
    "loss",
    "val_dice",
    "val_dice_right_ventricle",
    "val_dice_myocardium",
    "val_dice_left_ventricle",
    "val_robust_dice",
}
MARGIN_COLUMNS = {
    "margin_mean",
    "margin_q10",
    "margin_q25",
    "margin_median",
    "margin_q75",
    "margin_q90",
    "margin_at_max",
    "fail_fraction",
    "visited_fraction",
    "margin_grown",
    "margin_shrunk",
    "margin_changed",
}
IMA_COLUMNS = {"loss_clean", "loss_adv", "inner_failed", "adv_norm", "vulnerable_voxels", *MARGIN_COLUMNS}
METHODS = {
    "std": ({"method": "std"}, set()),
    "pgd-at": ({"method": "pgd-at"}, {"loss_clean", "loss_adv"}),
    "trades": ({"method": "trades"}, {"loss_clean", "loss_kl"}),
    "ima-sample": ({"method": "ima", "ima_margin": "sample"}, IMA_COLUMNS),
    "ima-voxel": ({"method": "ima", "ima_margin": "voxel"}, IMA_COLUMNS),
}


def read_log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def train_ids(cache: Path) -> list[str]:
    return CaseStore(cache).samples("train", 0).ids


@pytest.fixture(scope="module", params=list(METHODS), ids=list(METHODS))
def one_epoch_run(request, tiny_cache, tmp_path_factory):
    overrides, extra = METHODS[request.param]
    run = tmp_path_factory.mktemp("runs") / request.param
    config = tiny_train_config(epochs=1, **overrides)
    summary = train(tiny_cache, run, config, progress=False)
    return run, config, extra, summary


def test_every_method_writes_log_checkpoint_and_config(one_epoch_run, tiny_cache):
    run, config, extra, summary = one_epoch_run
    assert summary["epochs_run"] == 1 and summary["epoch"] == 1

    rows = read_log(run)
    assert [r["epoch"] for r in rows] == ["1"]
    assert set(rows[0]) == BASE_COLUMNS | extra
    assert all(rows[0][k] not in ("", "nan") for k in BASE_COLUMNS), "every base column is filled"

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and state["config"]["method"] == config.method
    assert state["data"] == {
        "in_channels": 1,
        "num_classes": 4,
        "spatial_dims": 2,
        "labels": CaseStore(tiny_cache).manifest.labels_json(),
    }
    network = build_model_from_config(config, 2, 1, 4)
    network.load_state_dict(state["network"])  # strict: the checkpoint rebuilds the trained network

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["cache"] == str(tiny_cache.resolve())
    assert saved["train"]["method"] == config.method and saved["train"]["epochs"] == 1
    split = json.loads((run / "split.json").read_text())
    assert split["fold"] == 0 and split["train_samples"] == len(train_ids(tiny_cache)) == 24

    if config.method == "ima":
        assert torch.equal(state["method"]["ima.bank.margins"].cpu(), torch.tensor(margins_of(run)[-1]))
        assert state["method"]["ima.bank._extra_state"]["sample_ids"] == train_ids(tiny_cache)
    else:
        assert state["method"] == {}
        assert not (run / "margins.json").exists()


@pytest.mark.parametrize(
    ("schedule", "factors"),
    [pytest.param("cosine", [0.5, 1.0, 0.5], id="cosine"), pytest.param("constant", [0.5, 1.0, 1.0], id="constant")],
)
def test_the_lr_column_is_the_rate_each_epoch_trained_with(tiny_cache, tmp_path, schedule, factors):
    config = tiny_train_config(epochs=3, warmup_epochs=1, schedule=schedule, val_steps=0)
    train(tiny_cache, tmp_path / "run", config, progress=False)
    logged = [float(r["lr"]) for r in read_log(tmp_path / "run")]
    assert logged == pytest.approx([config.lr * f for f in factors], rel=1e-5)


def margins_of(run: Path) -> list[list[float]]:
    return [epoch["margins"] for epoch in json.loads((run / "margins.json").read_text())["epochs"]]


@pytest.mark.parametrize("margin", ["sample", "voxel"])
def test_ima_writes_the_margins_of_every_training_sample_per_epoch(tiny_cache, tmp_path, margin):
    run = tmp_path / "run"
    train(tiny_cache, run, tiny_train_config(method="ima", ima_margin=margin, epochs=2, ima_delta=0.2), progress=False)
    data = json.loads((run / "margins.json").read_text())
    ids = train_ids(tiny_cache)
    assert data["sample_ids"] == ids and data["delta"] == 0.2 and data["eps_max"] == 1.0
    assert [e["epoch"] for e in data["epochs"]] == [1, 2]
    for epoch in data["epochs"]:
        assert len(epoch["margins"]) == len(ids)
        assert all(0.0 <= m <= 1.0 for m in epoch["margins"])
        assert epoch["margin_mean"] == pytest.approx(sum(epoch["margins"]) / len(ids), rel=1e-5)
        assert ("voxels" in epoch) == (margin == "voxel")
    assert data["epochs"][0]["margins"] != [0.2] * len(ids), "the first epoch updated the margins"
    if margin == "voxel":
        assert set(data["epochs"][0]["voxels"]["classes"]) == {"right ventricle", "myocardium", "left ventricle"}


# ---- resume ---------------------------------------------------------------------------------------------

RESUME_CASES = {
    "std": {"method": "std"},
    # tau 0.05: some samples survive and some fail on this barely trained model, so margins differ
    "ima-voxel": {"method": "ima", "ima_margin": "voxel", "ima_tau": 0.05},
    "ima-sample": {"method": "ima", "ima_margin": "sample", "ima_tau": 0.05},
}


def tensors_equal(a: dict, b: dict) -> list[str]:
    """Names of the tensors that differ between two (nested) state dicts."""
    differ = []
    for key in a:
        if isinstance(a[key], torch.Tensor):
            if not torch.equal(a[key], b[key]):
                differ.append(key)
        elif isinstance(a[key], dict):
            differ += [f"{key}.{k}" for k in tensors_equal(a[key], b[key])]
    return differ


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_bit_identical_to_an_uninterrupted_run(tiny_cache, tmp_path, case):
    config = tiny_train_config(epochs=2, **RESUME_CASES[case])
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(tiny_cache, straight, config, progress=False)
    first = train(tiny_cache, resumed, config, progress=False, stop_after=1)
    assert first["epochs_run"] == 1 and load_checkpoint(resumed / "checkpoints" / "last.pt")["epoch"] == 1
    second = train(tiny_cache, resumed, config, progress=False, resume=True)
    assert second["epochs_run"] == 1 and second["epoch"] == 2

    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert list(a["network"]) == list(b["network"])
    assert tensors_equal(a["network"], b["network"]) == []
    assert tensors_equal(a["optimizer"]["state"], b["optimizer"]["state"]) == []
    assert tensors_equal(a["method"], b["method"]) == []

    rows_a, rows_b = read_log(straight), read_log(resumed)
    assert [r["epoch"] for r in rows_b] == ["1", "2"]
    for row_a, row_b in zip(rows_a, rows_b):
        row_a.pop("seconds"), row_b.pop("seconds")
        assert row_a == row_b
    if config.method == "ima":
        assert margins_of(straight) == margins_of(resumed)
        assert len(set(margins_of(straight)[-1])) > 1, "margins must differ between samples for a real check"


def test_resuming_a_finished_run_trains_nothing(tiny_run, tiny_cache, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    before = load_checkpoint(run / "checkpoints" / "last.pt")
    summary = train(tiny_cache, run, tiny_train_config(epochs=8), progress=False, resume=True)
    assert summary["epochs_run"] == 0 and summary["epoch"] == 8
    after = load_checkpoint(run / "checkpoints" / "last.pt")
    assert tensors_equal(before["network"], after["network"]) == []


def test_log_rows_beyond_the_checkpoint_are_dropped_on_resume(tiny_cache, tmp_path):
    run = tmp_path / "run"
    config = tiny_train_config(epochs=2)
    train(tiny_cache, run, config, progress=False, stop_after=1)
    # rows of epochs whose checkpoint was never written (e.g. an older last.pt was restored)
    rows = read_log(run)
    fake = [dict(rows[0], epoch=str(e), loss="999") for e in (2, 3)]
    with open(run / "log.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows + fake)

    train(tiny_cache, run, config, progress=False, resume=True)
    after = read_log(run)
    assert [r["epoch"] for r in after] == ["1", "2"]
    assert after[0] == rows[0]
    assert after[1]["loss"] != "999", "epoch 2 is the real one"


class Killed(Exception):
    pass


def test_a_run_killed_while_writing_the_checkpoint_keeps_the_previous_one(tiny_run, tiny_cache, tmp_path, monkeypatch):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    before = load_checkpoint(run / "checkpoints" / "last.pt")
    real_save = torch.save

    def killed_mid_write(obj, f, *args, **kwargs):
        (f.write if hasattr(f, "write") else Path(f).write_bytes)(b"PK\x03\x04 half of a checkpoint")
        raise Killed("killed while writing")

    monkeypatch.setattr(checkpoint_module.torch, "save", killed_mid_write)
    config = tiny_train_config(epochs=9)
    with pytest.raises(Killed):
        train(tiny_cache, run, config, progress=False, resume=True)
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 8
    assert tensors_equal(before["network"], state["network"]) == []
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"], "no temporary files left"
    load_checkpoint(run / "checkpoints" / "best.pt")

    summary = train(tiny_cache, run, config, progress=False, resume=True)  # the rerun redoes epoch 9
    assert summary["epochs_run"] == 1 and load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 9
    assert [r["epoch"] for r in read_log(run)] == [str(e) for e in range(1, 10)]


def test_resume_from_a_corrupt_checkpoint_fails_instead_of_restarting(tiny_run, tiny_cache, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        train(tiny_cache, run, tiny_train_config(epochs=9), progress=False, resume=True)


def test_resume_with_margins_of_other_samples_is_refused(tiny_cache, tmp_path):
    run = tmp_path / "run"
    config = tiny_train_config(method="ima", epochs=2)
    train(tiny_cache, run, config, progress=False, stop_after=1)
    with pytest.raises(ValueError, match="margins belong to other training samples"):
        train(tiny_cache, run, tiny_train_config(method="ima", epochs=2, fold=1), progress=False, resume=True)


def test_a_finished_run_is_not_overwritten_unless_asked(tiny_cache, tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = load_checkpoint(run / "checkpoints" / "last.pt")["network"]
    with pytest.raises(FileExistsError, match=r"already holds a trained run .*--resume.*--overwrite"):
        train(tiny_cache, run, tiny_train_config(epochs=1), progress=False)
    kept = load_checkpoint(run / "checkpoints" / "last.pt")["network"]
    assert all(torch.equal(before[k], kept[k]) for k in before), "the refused call must not touch the checkpoint"
    stale_events = run / "tb" / "events.out.tfevents.stale"
    stale_events.parent.mkdir(exist_ok=True)
    stale_events.write_text("old curves")
    train(tiny_cache, run, tiny_train_config(epochs=1), progress=False, overwrite=True)
    assert not stale_events.exists(), "the old TensorBoard curves go with the old run"
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [r["epoch"] for r in rows] == ["1"], "overwriting starts a fresh log"
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
