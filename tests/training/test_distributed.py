"""DDP: data sharding, and a real two-process gloo run of IMA on CPU (torchrun's environment variables)
whose ranks end the epoch with the same margins, then resumes in a single process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from helpers import tiny_train_config

from imaseg.checkpoint import load_checkpoint
from imaseg.training import train
from imaseg.training.distributed import DistributedContext, init_distributed, shard


@pytest.mark.parametrize(
    ("n", "world"),
    [
        pytest.param(10, 3, id="10-over-3-padded"),
        pytest.param(8, 2, id="8-over-2-even"),
        pytest.param(2, 4, id="fewer-than-ranks"),
    ],
)
def test_shard_splits_like_distributed_sampler(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    parts = [shard(order, DistributedContext(rank, world, rank)) for rank in range(world)]
    per_rank = -(-n // world)
    assert all(p.numel() == per_rank for p in parts), "every rank gets the same number of samples"
    assert sorted(torch.cat(parts).unique().tolist()) == list(range(n)), "every sample is seen"
    assert torch.equal(torch.stack(parts, 1).flatten()[:n], order), "interleaved, in the epoch's order"


def test_single_process_context_is_a_no_op(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed(torch.device("cpu"))
    assert context == DistributedContext() and not context.enabled and context.is_main
    order = torch.arange(5)
    assert shard(order, context) is order


WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from imaseg.losses.margins import MarginBank
    from imaseg.config import config_from_dict
    from imaseg.training.config import TrainConfig
    from imaseg.training.trainer import train

    cache, run, out, settings = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    rank = int(os.environ["RANK"])
    original = MarginBank.end_epoch

    def end_epoch(self):
        local = {"visits": self.visits.tolist(), "survived": self.survived.tolist(), "estimate": self.estimate.tolist(),
                 "before": self.margins.tolist()}
        stats = original(self)
        local["margins"] = self.margins.tolist()
        with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
            json.dump(local, handle)
        return stats

    import imaseg.training.trainer as trainer

    networks = []
    build = trainer.build_model_from_config

    def keep_network(*args, **kwargs):
        networks.append(build(*args, **kwargs))
        return networks[-1]

    MarginBank.end_epoch = end_epoch
    trainer.build_model_from_config = keep_network
    train(cache, run, config_from_dict(TrainConfig, settings), stop_after=1, progress=False)
    torch.save({k: v.detach().cpu() for k, v in networks[0].state_dict().items()}, os.path.join(out, f"net{rank}.pt"))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(worker: Path, args: list[str], world: int = 2, timeout: float = 120.0) -> list[str]:
    """Start ``world`` ranks as torchrun would; return each rank's stderr; fail on a non-zero exit or a hang."""
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, WORLD_SIZE=str(world))
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, str(worker), *args], env=env, stderr=subprocess.PIPE, text=True))
    errors = []
    try:
        for proc in procs:
            errors.append(proc.communicate(timeout=timeout)[1])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    codes = [proc.returncode for proc in procs]
    assert codes == [0] * world, f"rank exit codes {codes}:\n" + "\n".join(e[-3000:] for e in errors)
    return errors


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["memory", "stream"])
def test_two_process_ima_keeps_margins_in_sync_and_resumes_in_one_process(tiny_cache, tmp_path, loader):
    run, out = tmp_path / "run", tmp_path / "ranks"
    out.mkdir()
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    # tau 0.05: on this barely trained model some samples survive and some fail, so the update differs per sample
    config = tiny_train_config(method="ima", epochs=2, ima_tau=0.05, threads=1, device="cpu", loader=loader)
    launch(worker, [str(tiny_cache), str(run), str(out), json.dumps(asdict(config))])

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    visits = torch.tensor([r["visits"] for r in ranks])
    assert (visits.sum(0) == 1).all(), "24 samples over 2 ranks: each visited by exactly one rank"
    assert (visits > 0).any(1).all(), "both ranks trained"
    assert ranks[0]["margins"] == ranks[1]["margins"], "after the all-reduce every rank holds the same margins"

    # and they are the official rule applied to the union of both ranks' visits
    delta, expected = config.ima.delta, []
    for i in range(visits.shape[1]):
        r = int(visits[:, i].argmax())
        local = ranks[r]
        grown = local["before"][i] + delta if local["survived"][i] else local["estimate"][i]
        expected.append(min(max(grown, 0.0), config.ima.eps_max))
    assert ranks[0]["margins"] == pytest.approx(expected, abs=1e-6)
    assert len(set(expected)) > 1, "margins must differ between samples for a real check"

    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert state["method"]["ima.bank.margins"].tolist() == pytest.approx(ranks[0]["margins"], abs=0)
    assert not any(k.startswith("module.") for k in state["network"]), "bare network weights, not the DDP wrapper's"
    weights = [torch.load(out / f"net{r}.pt", weights_only=True) for r in range(2)]
    for name, saved in state["network"].items():
        assert torch.equal(weights[0][name], weights[1][name]), f"ranks disagree on {name}: gradients not synced"
        assert torch.equal(weights[0][name], saved), name
    margins_json = json.loads((run / "margins.json").read_text())
    assert [e["epoch"] for e in margins_json["epochs"]] == [1]
    assert (run / "log.csv").read_text().count("\n") == 2, "one header, one row: written once, by rank 0"

    summary = train(tiny_cache, run, config, progress=False, resume=True)  # WORLD_SIZE unset: one process
    assert summary["epochs_run"] == 1 and summary["epoch"] == 2
    resumed = json.loads((run / "margins.json").read_text())["epochs"]
    assert [e["epoch"] for e in resumed] == [1, 2]
    assert resumed[0]["margins"] == margins_json["epochs"][0]["margins"]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
